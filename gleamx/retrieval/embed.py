"""Embed images with a retrieval encoder, batched, in eval mode, with a progress bar; sharded across processes and
cached on disk when asked.

Under ``accelerate launch`` (a ``torch.distributed`` process group of N processes) each process embeds one
contiguous shard of the list and the shards are all-gathered, so every process returns the whole matrix in the
list's order, as one process would: the embedding wall time divides by N and the metrics do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gleamx.checks import cap_workers
from gleamx.retrieval.dataset import ImageDataset
from gleamx.retrieval.embed_cache import EmbeddingCache, encoder_key, images_key
from gleamx.retrieval.encoder import RetrievalEncoder


def process_group() -> tuple[int, int]:
    """``(rank, world size)`` of the running ``torch.distributed`` group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of ``rank``'s contiguous share of ``n`` items; shares differ by at most one."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def _all_gather_rows(mine: torch.Tensor, n: int, world: int, device: torch.device) -> torch.Tensor:
    """Every rank's rows of an ``(n, dim)`` matrix split by :func:`shard_bounds`, concatenated in rank order."""
    import torch.distributed as dist

    sizes = [end - start for start, end in (shard_bounds(n, r, world) for r in range(world))]
    buf = torch.zeros(max(sizes), mine.shape[1], dtype=mine.dtype)
    buf[: mine.shape[0]] = mine
    # gloo gathers CPU tensors; NCCL needs them on this rank's GPU
    buf = buf.to(device if dist.get_backend() == "nccl" else "cpu")
    parts = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(parts, buf)
    return torch.cat([p[:s].cpu() for p, s in zip(parts, sizes)])


def _embed(encoder: RetrievalEncoder, paths: Sequence[Path], transform: object, batch_size: int, num_workers: int,
           device: torch.device, desc: str, show: bool) -> torch.Tensor:
    loader = DataLoader(ImageDataset(paths, transform), batch_size=batch_size, num_workers=cap_workers(num_workers))
    out = [encoder(pixels.to(device)).float().cpu()
           for pixels in tqdm(loader, desc=desc, leave=False, disable=not show or len(loader) < 4)]
    return torch.cat(out) if out else torch.empty(0, 0)


def cache_keys(encoder: RetrievalEncoder, paths: Sequence[Path]) -> tuple[str, str]:
    """``(encoder key, images key)``: the embedding cache's key of ``paths`` embedded by ``encoder`` (and of the
    gallery index built from them, :mod:`gleamx.retrieval.index`)."""
    return encoder_key(encoder, encoder.transform()), images_key(list(paths))


@torch.inference_mode()
def embed_images(encoder: RetrievalEncoder, paths: Sequence[Path], *, batch_size: int = 64, num_workers: int = 0,
                 device: str | torch.device | None = None, desc: str = "embedding",
                 cache: EmbeddingCache | None = None, shard: bool = False,
                 keys: tuple[str, str] | None = None) -> torch.Tensor:
    """(len(paths), dim) L2-normalised float32 embeddings, on the CPU, in ``paths``' order.

    With ``cache``, embeddings of the same encoder (weights and preprocessing) over the same image list are read
    back instead of recomputed, and new ones are stored (by rank 0). With ``shard`` and a process group of N > 1
    processes (fewer images than processes: no sharding), each process embeds ``1/N`` of the list; every process
    must call this with the same list (off by default: training scores its eval split on rank 0 alone). ``keys``:
    the cache entry's :func:`cache_keys`, when the caller already has them (hashing every image again costs a read
    of the whole list).
    """
    paths = list(paths)
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    transform = encoder.transform()
    rank, world = process_group()
    if cache is not None:
        keys = keys or cache_keys(encoder, paths)
        hit = cache.load(*keys, n=len(paths))
        if hit is not None:
            return hit
    was_training = encoder.training
    encoder.eval()
    try:
        if shard and world > 1 and len(paths) >= world:
            start, end = shard_bounds(len(paths), rank, world)
            mine = _embed(encoder, paths[start:end], transform, batch_size, num_workers, device,
                          f"{desc} (shard {rank + 1}/{world})", rank == 0)
            out = _all_gather_rows(mine, len(paths), world, device)
        else:
            out = _embed(encoder, paths, transform, batch_size, num_workers, device, desc, rank == 0)
    finally:
        encoder.train(was_training)
    if cache is not None and keys is not None and rank == 0 and out.numel():
        cache.save(*keys, out)
    return out
