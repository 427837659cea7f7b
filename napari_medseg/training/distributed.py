"""Data-parallel training under ``torchrun`` (DDP): process group, samplers, reductions.

``torchrun --nproc_per_node N -m napari_medseg.cli train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init_from_env` then joins the process group (``nccl`` on CUDA, ``gloo`` on
CPU). Without those variables everything runs in one process and every helper is a no-op.

Each rank reads its share of the cases through a ``DistributedSampler``; both networks are wrapped
in ``DistributedDataParallel`` (gradients averaged across ranks). Only rank 0 validates and writes
logs and checkpoints.

**Label-distribution state.** Every rank holds the learnable label distributions of *all* training
cases (one flat tensor, see :mod:`~napari_medseg.training.label_correction`). After each backward
pass the gradient of that tensor is summed across ranks (:func:`all_reduce_sum_`) before the
identical SGD step, so the copies never diverge even though the sampler reshuffles which rank sees
which case each epoch. The per-case peer agreement the curriculum ranks by is summed the same way at
the end of each epoch, so all ranks admit the same cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``enabled=False``: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, True)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap(net: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(net)`` when distributed, else ``net``."""
    if not info.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def all_reduce_sum_(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op for a single process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_array(array: np.ndarray, info: DistInfo) -> np.ndarray:
    """Sum a float numpy array over all ranks (returns a new array)."""
    if not info.enabled:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.numpy()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
