"""Building blocks of BS-Net (boundary-aware segmentation network), assembled in ``bsnet.py``.

All blocks are 3D and keep ``(B, C, D, H, W)`` tensors. Convolutions, normalisation and
activation come from MONAI (``UnetResBlock``, ``get_conv_layer``) so that BS-Net uses the same
conventions (instance norm, LeakyReLU 0.01) as MONAI's DynUNet / UNETR decoders.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import UnetOutBlock, UnetResBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from torch import nn

NORM = "instance"
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


class EncoderStage(nn.Module):
    """One encoder level: residual block(s), the first of which downsamples by ``stride``.

    Each block is MONAI's ``UnetResBlock`` (two 3x3x3 convolutions, instance norm, LeakyReLU, a
    projected shortcut when the shape changes).
    ``(B, in_ch, D, H, W) -> (B, out_ch, D/stride, H/stride, W/stride)``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str = NORM, n_blocks: int = 1) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                UnetResBlock(
                    3,
                    in_ch if i == 0 else out_ch,
                    out_ch,
                    kernel_size=3,
                    stride=stride if i == 0 else 1,
                    norm_name=norm,
                    act_name=ACT,
                )
                for i in range(n_blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class DecoderStage(nn.Module):
    """One decoder level: upsample x2 (transposed conv), concatenate the skip, residual block.

    ``x (B, in_ch, d, h, w), skip (B, skip_ch, 2d, 2h, 2w) -> (B, out_ch, 2d, 2h, 2w)``.
    Unlike MONAI's ``UnetUpBlock`` the skip may have a different width than the output, which lets
    the boundary decoder be narrower than the encoder.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, norm: str = NORM) -> None:
        super().__init__()
        self.up = get_conv_layer(
            3, in_ch, out_ch, kernel_size=2, stride=2, conv_only=True, is_transposed=True, bias=False
        )
        self.fuse = UnetResBlock(
            3, out_ch + skip_ch, out_ch, kernel_size=3, stride=1, norm_name=norm, act_name=ACT
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat((self.up(x), skip), dim=1))


class BoundaryGate(nn.Module):
    """Boundary-guided fusion: ``seg * (1 + sigmoid(conv1x1(boundary)))``.

    ``seg (B, seg_ch, d, h, w), boundary (B, bnd_ch, d, h, w) -> (B, seg_ch, d, h, w)``. The gate
    only amplifies (factor in [1, 2]), so a boundary decoder that has learnt nothing yet leaves the
    segmentation path intact (factor ~1.5 everywhere, absorbed by the next normalisation).
    """

    def __init__(self, seg_ch: int, bnd_ch: int) -> None:
        super().__init__()
        self.attn = get_conv_layer(3, bnd_ch, seg_ch, kernel_size=1, stride=1, conv_only=True, bias=True)

    def forward(self, seg: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
        return seg * (1.0 + torch.sigmoid(self.attn(boundary)))


class Head(UnetOutBlock):
    """1x1x1 convolution to logits: ``(B, in_ch, d, h, w) -> (B, n_out, d, h, w)``."""

    def __init__(self, in_ch: int, n_out: int) -> None:
        super().__init__(3, in_ch, n_out)
