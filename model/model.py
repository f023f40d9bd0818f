"""Models named in config.json (`arch.type`)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from base import BaseModel


class MnistModel(BaseModel):
    """LeNet for 28x28 MNIST digits: two conv layers, dropout, two fully connected layers."""

    def __init__(self, num_classes=10, channels_last=True, dropout=0.5):
        super().__init__()
        self.dropout = dropout  # 0: no random masks, so a run's steps depend on its data alone, at any world size
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)
        # channels_last (NHWC) weights and activations: the CPU's pooling and convolution
        # kernels take about 30 % less time on it; results agree up to float rounding. FSDP2 shards
        # row-major weights only: under trainer.strategy "fsdp" they are made row-major again
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x):
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)  # (N, 320) in (C, H, W) order, whatever the memory layout
        x = F.relu(self.fc1(x))
        x = F.dropout(x, self.dropout, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class ImageClassifier(BaseModel):
    """A small CNN for images of any size and channel count: the starting point for your own data
    (docs/customizing.md). Global average pooling makes the head independent of the image size."""

    def __init__(self, num_classes, in_channels=3, width=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return F.log_softmax(self.head(self.features(x).flatten(1)), dim=1)  # log-probabilities for nll_loss
