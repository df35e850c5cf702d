"""Embed images with a GLEAM-C encoder, batched, in eval mode, with a progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gleamx.retrieval.dataset import ImageDataset
from gleamx.retrieval.encoder import GleamCEncoder


@torch.inference_mode()
def embed_images(encoder: GleamCEncoder, paths: Sequence[Path], *, batch_size: int = 64, num_workers: int = 0,
                 device: str | torch.device | None = None, desc: str = "embedding") -> torch.Tensor:
    """(len(paths), dim) L2-normalised float32 embeddings, on the CPU."""
    device = device or next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    loader = DataLoader(ImageDataset(paths, encoder.transform()), batch_size=batch_size, num_workers=num_workers)
    out = []
    for pixels in tqdm(loader, desc=desc, leave=False, disable=len(loader) < 4):
        out.append(encoder(pixels.to(device)).float().cpu())
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)
