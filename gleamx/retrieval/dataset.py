"""torch datasets over a :class:`~gleamx.retrieval.data.RetrievalSet`: training pairs and plain image lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gleamx.data.images import open_image
from gleamx.retrieval.data import RetrievalSet


def _open(path: Path) -> Any:
    # A corrupt or oversized file surfaces mid-epoch, maybe in a DataLoader worker: open_image names it in one line.
    return open_image(path)


class PairDataset(Dataset):
    """(query pixels, its satellite's pixels) for every query of the set."""

    def __init__(self, rset: RetrievalSet, transform: Callable[[Any], torch.Tensor]) -> None:
        self.rset, self.transform = rset, transform
        self.locations = [q.location_id for q in rset.queries]
        self.semi_positives = [q.semi_positives for q in rset.queries]

    def __len__(self) -> int:
        return len(self.rset.queries)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        q = self.rset.queries[i]
        sat = self.rset.gallery[self.rset.positive(q)]
        return {"query": self.transform(_open(q.image)), "satellite": self.transform(_open(sat.image))}


class ImageDataset(Dataset):
    """Pixels of a list of image files (for embedding a gallery or a query list)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], torch.Tensor]) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(_open(self.paths[i]))
