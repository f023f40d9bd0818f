"""Metrics named in config.json (`metrics`).

Each returns a 0-d tensor on the output's device, so the training step needs
no host-device synchronisation; the trainer reads the numbers when it logs.
"""
import torch


def accuracy(output, target):
    with torch.no_grad():
        pred = torch.argmax(output, dim=1)
        return (pred == target).float().mean()


def top_k_acc(output, target, k=3):
    with torch.no_grad():
        top_k = torch.topk(output, k, dim=1).indices
        return (top_k == target.unsqueeze(1)).any(dim=1).float().mean()
