"""PyTorch-native networks that segkit's models are measured against.

* :class:`NotebookUNet`: a line-for-line PyTorch port of the notebook's U-Net, the network
  ``segkit.models.get("unet")`` builds (same layers, same 5,680,289 parameters), so the
  comparison is segkit-on-Keras against the same network in plain PyTorch.
* MONAI's ``BasicUNet`` and ``UNet``, sized to about the same parameter count as segkit's
  ``unet`` (5.7M) and ``resunet`` (6.3M): what a PyTorch user would most likely pick instead.

Every peer takes ``(batch, 1, H, W)`` and returns sigmoid probabilities of the same shape, as
segkit's models do (in channels-last).
"""

from __future__ import annotations

import torch
from torch import nn

#: Parameter count of the notebook's U-Net (and of ``segkit.models.get("unet")``).
NOTEBOOK_UNET_PARAMS = 5_680_289

#: Peer name -> what it is, for reports.
PEERS = {
    "notebook_unet": "PyTorch port of the notebook U-Net",
    "monai_basicunet": "MONAI BasicUNet, features (32, 64, 128, 256, 352, 32)",
    "monai_unet": "MONAI UNet, channels 32-512, 2 residual units",
}


def _conv_block(in_channels: int, filters: int) -> nn.Sequential:
    """Two 3x3 same-padded convolutions with bias, each followed by ReLU (the notebook's)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, filters, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(filters, filters, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class NotebookUNet(nn.Module):
    """The notebook's U-Net: filters 32-64-128-256, a 256-filter bottleneck, dropout 0.4.

    Each down block is two 3x3 conv + ReLU, then 2x2 max pooling and dropout. Each up step is a
    3x3 stride-2 transposed convolution, concatenation with the skip (upsampled first), dropout
    and a conv block. A 1x1 convolution and a sigmoid give the mask.
    """

    def __init__(
        self, in_channels: int = 1, base_filters: int = 32, depth: int = 4, dropout: float = 0.4
    ):
        super().__init__()
        widths = [base_filters * 2**level for level in range(depth)]
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(_conv_block(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.bottleneck = _conv_block(channels, widths[-1])
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths):
            # Keras' Conv2DTranspose(3, strides=2, padding="same") doubles the size exactly.
            self.upconv.append(
                nn.ConvTranspose2d(channels, width, 3, stride=2, padding=1, output_padding=1)
            )
            self.up.append(_conv_block(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # Keras' he_normal, zero bias
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.dropout(self.pool(x))
        x = self.bottleneck(x)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips), strict=True):
            x = self.dropout(torch.cat([upconv(x), skip], dim=1))
            x = block(x)
        return torch.sigmoid(self.head(x))


def build(name: str) -> nn.Module:
    """The peer network called ``name`` (a key of :data:`PEERS`).

    Raises:
        KeyError: unknown name.
        ImportError: a MONAI peer without ``monai`` installed.
    """
    if name == "notebook_unet":
        model = NotebookUNet()
        count = count_parameters(model)
        assert count == NOTEBOOK_UNET_PARAMS, f"port has {count} parameters, notebook has 5680289"
        return model
    if name == "monai_basicunet":
        from monai.networks.nets import BasicUNet

        # MONAI's defaults otherwise: instance norm, LeakyReLU, transposed-conv upsampling.
        net = BasicUNet(
            spatial_dims=2, in_channels=1, out_channels=1, features=(32, 64, 128, 256, 352, 32)
        )
        return nn.Sequential(net, nn.Sigmoid())
    if name == "monai_unet":
        from monai.networks.nets import UNet

        net = UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=(32, 64, 128, 256, 512),
            strides=(2, 2, 2, 2),
            num_res_units=2,
        )
        return nn.Sequential(net, nn.Sigmoid())
    raise KeyError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The notebook's Dice loss, ``1 - (2*sum(y*p) + 1) / (sum(y) + sum(p) + 1)`` over the batch
    (segkit's ``DiceLoss()`` defaults)."""
    intersection = (probabilities * target).sum()
    return 1 - (2 * intersection + 1) / (target.sum() + probabilities.sum() + 1)
