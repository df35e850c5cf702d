"""Training batches for GLEAM-C: one pair per location per batch, and hard negatives by similarity.

InfoNCE treats every other satellite in a batch as a negative. Two queries of one location
(its UAV view and its panorama, say) in one batch would make their shared satellite a false
negative, so a batch never holds two pairs of one location.

Dynamic Similarity Sampling (the GLEAM paper, after Sample4Geo): from an epoch on, the trainer
embeds the training satellites and hands each location its most similar other locations. Each
anchor then pulls pairs of up to ``n_hard`` of them into its batch, so the negatives are hard. It
needs no GPS, only the encoder's own embeddings.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class LocationBatchSampler(Sampler[list[int]]):
    """Yields lists of pair indices. Over an epoch every pair comes at most once: batches that
    cannot be filled (the pairs left conflict with each other) are dropped when ``drop_last``."""

    def __init__(self, pair_locations: Sequence[str], batch_size: int, *, seed: int = 0,
                 drop_last: bool = True, pair_semi_positives: Sequence[Sequence[str]] | None = None) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size: expected at least 2 (InfoNCE needs negatives), got {batch_size}")
        if len(set(pair_locations)) < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {len(set(pair_locations))} distinct locations: "
                             "a batch holds one pair per location")
        self.locs = list(pair_locations)
        # VIGOR: tiles that also cover a pair's query must not be another pair's satellite in its batch.
        self.semis = [frozenset(x) for x in pair_semi_positives] if pair_semi_positives else None
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.epoch = 0
        self.neighbours: dict[str, list[str]] = {}
        self.n_hard = 0
        self._cache: tuple[int, int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_neighbours(self, neighbours: dict[str, list[str]], n_hard: int) -> None:
        """Most similar other locations per location (best first); ``n_hard`` of them join an anchor's batch."""
        self.neighbours, self.n_hard = neighbours, n_hard
        self._cache = None

    def _batches(self) -> list[list[int]]:
        key = (self.epoch, id(self.neighbours))
        if self._cache is not None and self._cache[:2] == key:
            return self._cache[2]
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.locs)))
        rng.shuffle(order)
        todo = deque(order)
        by_loc: dict[str, list[int]] = {}
        for i in order:
            by_loc.setdefault(self.locs[i], []).append(i)
        used: set[int] = set()
        batches: list[list[int]] = []
        while todo:
            batch: list[int] = []
            in_batch: set[str] = set()
            covered: set[str] = set()  # semi-positive tiles of the pairs in the batch
            deferred: list[int] = []

            def take(i: int) -> None:
                batch.append(i)
                used.add(i)
                in_batch.add(self.locs[i])
                by_loc[self.locs[i]].remove(i)
                if self.semis is not None:
                    covered.update(self.semis[i])

            def fits(i: int) -> bool:
                loc = self.locs[i]
                if loc in in_batch or loc in covered:
                    return False
                return self.semis is None or not (self.semis[i] & in_batch)

            while todo and len(batch) < self.batch_size:
                i = todo.popleft()
                if i in used:
                    continue
                if not fits(i):
                    deferred.append(i)  # its location (or a tile covering it) is here already: next batch
                    continue
                take(i)
                pulled = 0
                for nb in self.neighbours.get(self.locs[i], []):  # the next one stands in for a used-up neighbour
                    if pulled >= self.n_hard or len(batch) >= self.batch_size:
                        break
                    if by_loc.get(nb) and fits(by_loc[nb][0]):
                        take(by_loc[nb][0])
                        pulled += 1
            todo.extendleft(reversed(deferred))
            # A short batch means the pairs left conflict (same or covering locations): mostly at the end.
            if len(batch) == self.batch_size or (batch and not self.drop_last):
                batches.append(batch)
        self._cache = (*key, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
