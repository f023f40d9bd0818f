"""Batch transforms: elementwise work done once per batch, after collation, on the training device (workers
pass compact uint8 samples, a quarter of float32's bytes, and the arithmetic runs once per batch)."""
import torch
from torch.utils.data import DataLoader


class ScaleNormalize:
    """uint8 images (N, C, H, W) -> float32 in [0, 1] -> (x - mean) / std, per channel: ToTensor + Normalize's
    arithmetic, bit for bit (v2's ToDtype(scale=True) multiplies by 1/255: another last bit)."""

    def __init__(self, mean, std, scale=255.0):
        self.mean, self.std, self.scale = tuple(mean), tuple(std), scale

    def __call__(self, images):
        x = images.to(torch.float32).div_(self.scale)
        shape = (len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x.sub_(mean).div_(std)


def transform_inputs(transform, batch):
    """Apply `transform` to a batch's inputs: the batch itself, or the first item of (inputs, targets, ...)."""
    if isinstance(batch, (tuple, list)):
        return type(batch)([transform(batch[0]), *batch[1:]])
    return transform(batch)


def defer_batch_transform(loader):
    """Switch off `loader`'s own batch transform and return it (None: none), for the caller to apply
    after the copy to the device. The loader then yields untransformed batches, to anyone."""
    if not isinstance(loader, BatchTransformLoader):
        return None
    loader.transform_in_loader = False
    return loader.batch_transform


class BatchTransformLoader(DataLoader):
    """A DataLoader that applies `batch_transform` to each batch's inputs after collation, in the main process, so
    any loop (a classic one) receives model inputs; `defer_batch_transform` hands it to a loop's device."""

    def __init__(self, *args, batch_transform=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_transform = batch_transform
        self.transform_in_loader = True  # False: the loop applies it (defer_batch_transform)

    def __iter__(self):
        batches = super().__iter__()
        if self.batch_transform is None or not self.transform_in_loader:
            return batches
        return (transform_inputs(self.batch_transform, batch) for batch in batches)
