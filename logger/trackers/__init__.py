"""Experiment trackers beside TensorBoard (trainer.trackers): MLflow and W&B, imported only when listed."""
