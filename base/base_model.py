"""BaseModel: an nn.Module whose printout ends with its trainable-parameter count."""
from abc import ABC, abstractmethod

import torch.nn as nn


class BaseModel(nn.Module, ABC):
    """Base class for all models."""

    @abstractmethod
    def forward(self, *inputs):
        """Forward pass logic."""

    def __str__(self):
        params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return super().__str__() + f"\nTrainable parameters: {params}"
