"""Networks (UNETR, BS-Net), their building blocks, boundary targets, preprocessing and checkpoints.

Every network maps ``(B, 1, D, H, W) float32 -> logits (B, C, D, H, W)``. Submodules import torch
and MONAI; import them directly (``from napari_medseg.models.pair import ModelPair``).
"""
