"""Metrics named in config.json (`metrics`): each returns a 0-d tensor on the output's device, so the training
step needs no host-device synchronisation; the trainer reads the numbers when it logs."""
import torch

from utils.errors import UserError


def accuracy(output, target):
    with torch.no_grad():
        pred = torch.argmax(output, dim=1)
        return (pred == target).float().mean()


def top_k_acc(output, target, k=3):
    if k > output.size(1):  # torch.topk's own error names neither the metric nor the fix
        raise UserError(f"metric top_k_acc needs at least k={k} classes, but the model outputs {output.size(1)}; "
                        "drop top_k_acc from \"metrics\" or lower its k in model/metric.py")
    with torch.no_grad():
        top_k = torch.topk(output, k, dim=1).indices
        return (top_k == target.unsqueeze(1)).any(dim=1).float().mean()
