"""Batched training augmentation in torch: cached cases in, augmented batches out, on any device.

Each training case is normalised and padded once (:func:`~napari_medseg.training.data.load_cases`)
and kept as a tensor on the training device (:class:`CachedCases`). A batch is then assembled and
augmented in a handful of torch calls — one ``affine_grid`` + two ``grid_sample`` for the whole batch —
instead of one MONAI ``RandAffined`` per case in numpy (≈ 100 ms a hippocampus case on one CPU
core, which left a GPU idle most of each step).

The transforms and their distribution are those of the MONAI pipeline they replace
(MONAI ``RandAffined`` + ``RandGaussianNoised`` + ``RandScaleIntensityd``, checked against MONAI in
tests/test_training_augment.py), per sample:

* with probability 0.8 a random affine about the patch centre: rotations uniform in ±0.15 rad about
  each axis, scale factors ``1 + U(-0.1, 0.1)`` per axis (MONAI's ``RandAffine`` convention: the matrix
  maps output voxel coordinates to input ones, so a factor > 1 shrinks the anatomy), and, when
  ``translate`` > 0, shifts uniform in ±``translate`` voxels per axis (MONAI's ``translate_range``;
  0 in :class:`AugmentSettings`, the pipeline replaced; training uses ``TrainConfig.translate`` = 8),
  zero padding; bilinear for the image, nearest for the label and the canonical
  coordinates;
* with probability 0.3 Gaussian noise of standard deviation ``U(0, 0.05)`` on the image;
* with probability 0.5 intensity scaling ``image * (1 + U(-0.1, 0.1))``.

No flips: anatomical labels are sided. The label, the image and the ``coords`` channels (1-based
canonical voxel, 0 = padding pulled in) are resampled with the *same* grid, so they stay aligned.

Shapes: batch ``image`` (B, 1, D, H, W) float32, ``label`` (B, D, H, W) int64, ``coords``
(B, 3, D, H, W) int64, ``index`` (B,) int64 — the same dict a ``DataLoader`` over
:class:`~napari_medseg.training.data.CaseDataset` yields.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from napari_medseg.training.data import CaseArrays


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of the batched augmentation (defaults = the MONAI pipeline's)."""

    affine_prob: float = 0.8
    rotate: float = 0.15  # radians, each axis
    scale: float = 0.1  # factor 1 ± scale, each axis
    # voxels, each axis; 0 here (the MONAI pipeline replaced had none). Without it a case smaller than
    # the patch always sits in its centre and UNETR learns that position (bench/RESULTS.md, session 6):
    # the trainer passes TrainConfig.translate
    translate: float = 0.0
    noise_prob: float = 0.3
    noise_std: float = 0.05
    intensity_prob: float = 0.5
    intensity: float = 0.1


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles (rad) about axes 0, 1, 2 -> (B, 3, 3) rotation matrices in (D, H, W) order."""
    b = angles.shape[0]
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones(b, dtype=angles.dtype), torch.zeros(b, dtype=angles.dtype)

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    r0 = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    r1 = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    r2 = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return r0 @ r1 @ r2


def sample_affines(batch: int, settings: AugmentSettings, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 4) voxel-space affines ``[M | t]`` mapping output to input coordinates about the patch centre.

    ``input = M @ output + t`` in (D, H, W) voxel offsets from the centre; ``t`` is zero unless
    ``settings.translate`` > 0 (its draws come after the others, so the stream of a run without
    translation is unchanged). Identity for samples that draw no affine (probability ``1 - affine_prob``).
    """
    u = torch.rand(batch, 7, generator=generator, dtype=torch.float64)
    angles = (u[:, 0:3] * 2 - 1) * settings.rotate
    scales = 1 + (u[:, 3:6] * 2 - 1) * settings.scale
    mats = torch.zeros(batch, 3, 4, dtype=torch.float64)
    mats[:, :, :3] = _rotation(angles) @ torch.diag_embed(scales)
    if settings.translate > 0:
        shift = torch.rand(batch, 3, generator=generator, dtype=torch.float64)
        mats[:, :, 3] = (shift * 2 - 1) * settings.translate
    apply = u[:, 6] < settings.affine_prob
    eye = torch.eye(3, 4, dtype=torch.float64).expand(batch, 3, 4)
    return torch.where(apply[:, None, None], mats, eye)


def affine_theta(mats: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Voxel-space (D, H, W) affines (B, 3, 4) -> ``affine_grid`` thetas (B, 3, 4) for a patch of ``shape``.

    ``affine_grid`` works in normalised coordinates in (x=W, y=H, z=D) order with ``align_corners=True``
    (−1 and 1 are the centres of the first and last voxel); the conversion keeps rotations rigid in
    voxel units on a non-cubic patch.
    """
    half = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64)
    # normalised -> voxel offsets from the centre: v = half * n ; back: n = v / half
    m = torch.diag(1 / half) @ mats[:, :, :3] @ torch.diag(half)  # (B, 3, 3) in (D, H, W) order
    t = mats[:, :, 3] / half  # (B, 3) normalised shifts in (D, H, W) order
    perm = [2, 1, 0]
    theta = torch.zeros(mats.shape[0], 3, 4, dtype=torch.float64)
    theta[:, :, :3] = m[:, perm][:, :, perm]  # to (x, y, z) = (W, H, D)
    theta[:, :, 3] = t[:, perm]
    return theta


def apply_affines(
    image: torch.Tensor, label: torch.Tensor, coords: torch.Tensor, mats: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resample a batch with voxel-space affines ``mats`` (B, 3, 4) (see :func:`sample_affines`).

    The image bilinear, label and coords nearest (an index lookup at the rounded grid position, what
    ``grid_sample``'s "nearest" does, without resampling 4 channels), all on one grid; zero padding.
    Shapes as :func:`augment_batch`.
    """
    b = image.shape[0]
    shape = tuple(int(n) for n in image.shape[2:])
    dev = image.device
    theta = affine_theta(mats, shape).to(device=dev, dtype=torch.float32)
    grid = F.affine_grid(theta, [b, 1, *shape], align_corners=True)  # (B, D, H, W, xyz)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    half = torch.tensor([(n - 1) / 2 for n in shape], device=dev)
    idx = ((grid.flip(-1) + 1) * half).round().long()  # (B, D, H, W, 3) in (D, H, W) order
    size = torch.tensor(shape, device=dev)
    inside = ((idx >= 0) & (idx < size)).all(-1)
    idx = torch.minimum(idx.clamp(min=0), size - 1)
    flat = ((idx[..., 0] * shape[1] + idx[..., 1]) * shape[2] + idx[..., 2]).view(b, -1)
    label = label.reshape(b, -1).gather(1, flat).view(b, *shape) * inside
    coords = coords.reshape(b, 3, -1).gather(2, flat[:, None].expand(b, 3, -1)).view(b, 3, *shape)
    return image, label, coords * inside[:, None]


def augment_batch(
    image: torch.Tensor,
    label: torch.Tensor,
    coords: torch.Tensor,
    generator: torch.Generator,
    settings: AugmentSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch in place of the MONAI per-case pipeline (see the module docstring).

    Args:
        image: (B, 1, D, H, W) float32; label: (B, D, H, W) int64; coords: (B, 3, D, H, W) int64.
        generator: CPU generator for the random draws (the draws do not depend on the device).
    Returns:
        Augmented ``(image, label, coords)`` with the same shapes, dtypes and device.
    """
    s = settings or AugmentSettings()
    b = image.shape[0]
    dev = image.device
    mats = sample_affines(b, s, generator)  # identity for samples that draw no affine
    if not bool(torch.isclose(mats, torch.eye(3, 4, dtype=mats.dtype)).all()):
        image, label, coords = apply_affines(image, label, coords, mats)
    u = torch.rand(b, 4, generator=generator)
    std = (u[:, 0] < s.noise_prob).float() * u[:, 1] * s.noise_std
    factor = 1 + (u[:, 2] < s.intensity_prob).float() * (u[:, 3] * 2 - 1) * s.intensity
    noise = torch.randn(image.shape, generator=generator).to(dev)
    image = image + noise * std.to(dev)[:, None, None, None, None]
    image = image * factor.to(dev)[:, None, None, None, None]
    return image, label, coords


class CachedCases:
    """Training cases held once as tensors on the training device, served as augmented batches.

    Iterating yields one epoch of batches (shuffled order; under DDP each rank its own shard, as a
    ``DistributedSampler`` would). ``len()`` is the number of batches per epoch.

    Args:
        cases: cases on their canonical grids (``data.load_cases``), ``cases[i].index == i``.
        patch: sample size (D, H, W); a case larger than the patch gives a random window of it.
        batch_size: samples per batch (the last batch may be smaller).
        device: where the cached tensors live and the augmentation runs.
        augment: False = centred windows, identity coords (no random transform).
        seed: seeds the order, windows and transforms.
        rank, world_size: DDP shard of this process.
    """

    def __init__(
        self,
        cases: list[CaseArrays],
        patch: tuple[int, int, int],
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        settings: AugmentSettings | None = None,
    ):
        self.patch = tuple(int(p) for p in patch)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.augment = augment
        self.settings = settings or AugmentSettings()
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        self.epoch = 0
        self.images = [torch.from_numpy(c.image).to(self.device) for c in cases]
        self.labels = [torch.from_numpy(c.label).to(self.device) for c in cases]
        self.approved = [bool(c.approved) for c in cases]
        self.generator = torch.Generator().manual_seed(seed + 7919 * rank)
        # 1-based canonical coordinates of a window starting at the grid origin; a window elsewhere
        # adds its start (built once, not per sample and batch)
        axes = [torch.arange(1, w + 1, device=self.device) for w in self.patch]
        self._coords0 = torch.stack(torch.meshgrid(*axes, indexing="ij"))

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shuffled order (all ranks agree on it, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        n = len(self.images)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(n, generator=g).tolist()
        if self.world_size > 1:
            total = math.ceil(n / self.world_size) * self.world_size
            order = (order + order[: total - n])[self.rank : total : self.world_size]
        return order

    def __len__(self) -> int:
        n = math.ceil(len(self.images) / self.world_size)
        return math.ceil(n / self.batch_size)

    def _window(self, shape: tuple[int, ...]) -> tuple[slice, ...]:
        out = []
        for n, w in zip(shape, self.patch, strict=True):
            hi = n - w
            start = (
                int(torch.randint(0, hi + 1, (1,), generator=self.generator))
                if self.augment and hi > 0
                else hi // 2
            )
            out.append(slice(start, start + w))
        return tuple(out)

    def batch(self, indices: list[int]) -> dict[str, Any]:
        """The (augmented) batch of the cases at ``indices``."""
        imgs, labs, crds = [], [], []
        for i in indices:
            win = self._window(tuple(self.images[i].shape))
            imgs.append(self.images[i][win])
            labs.append(self.labels[i][win])
            start = torch.tensor([s.start for s in win], device=self.device)
            crds.append(self._coords0 + start[:, None, None, None])
        image = torch.stack(imgs)[:, None].float()
        label = torch.stack(labs).long()
        coords = torch.stack(crds).long()
        if self.augment:
            image, label, coords = augment_batch(image, label, coords, self.generator, self.settings)
        return {
            "image": image,
            "label": label,
            "coords": coords,
            "index": torch.as_tensor(indices, dtype=torch.int64),
            "approved": torch.as_tensor([self.approved[i] for i in indices]),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self._order()
        for k in range(0, len(order), self.batch_size):
            yield self.batch(order[k : k + self.batch_size])
