"""BaseModel: an nn.Module whose printout ends with its trainable-parameter count."""
from abc import ABC, abstractmethod

import torch.nn as nn

from utils.sharding import direct_children_with_parameters


class BaseModel(nn.Module, ABC):
    """Base class for all models."""

    @abstractmethod
    def forward(self, *inputs):
        """Forward pass logic."""

    def fsdp_units(self):
        """The submodules trainer.strategy "fsdp" shards one by one: each all-gathers its weights just before
        its forward and frees them after, so the largest unit bounds the memory. Parameters outside every unit
        go with the root. Default: each direct child that has parameters; a transformer returns its blocks."""
        return direct_children_with_parameters(self)

    def __str__(self):
        params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return super().__str__() + f"\nTrainable parameters: {params}"
