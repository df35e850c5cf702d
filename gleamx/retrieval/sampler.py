"""Training batches for the retrieval encoder: one pair per location per batch, and hard negatives by similarity.

InfoNCE treats every other satellite in a batch as a negative. Two queries of one location
(its UAV view and its panorama, say) in one batch would make their shared satellite a false
negative, so a batch never holds two pairs of one location.

Dynamic Similarity Sampling (the GLEAM paper, after Sample4Geo): from an epoch on, the trainer
embeds the training satellites and hands each location its most similar other locations. Each
anchor then pulls pairs of up to ``n_hard`` of them into its batch, so the negatives are hard. It
needs no GPS, only the encoder's own embeddings.

Modality balance (``view_mix``): each batch then holds a set share of each query view (e.g. equal parts
UAV, street map, panorama and ground), whatever the views' sizes in the data. A view's pairs are drawn in
a shuffled cycle that starts again when it runs out, so a small view repeats within an epoch and a large
one is subsampled (a new subset each epoch); an epoch keeps the natural number of batches.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence

from torch.utils.data import Sampler


class LocationBatchSampler(Sampler[list[int]]):
    """Yields lists of pair indices. Over an epoch every pair comes at most once: batches that
    cannot be filled (the pairs left conflict with each other) are dropped when ``drop_last``.

    With ``view_mix`` (view -> weight; ``pair_views`` gives each pair's view) every batch holds the
    views in those proportions: a batch of 8 with equal weights on 4 views has 2 of each; shares
    that do not divide evenly are rounded so that each view's count over the epoch stays within one
    of its share. Views left out of the mix (or weighted 0) are not drawn.
    """

    def __init__(self, pair_locations: Sequence[str], batch_size: int, *, seed: int = 0,
                 drop_last: bool = True, pair_semi_positives: Sequence[Sequence[str]] | None = None,
                 pair_views: Sequence[str] | None = None, view_mix: Mapping[str, float] | None = None) -> None:
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
        self.views = list(pair_views) if pair_views is not None else None
        self.view_share: dict[str, float] | None = None
        if view_mix is not None:
            self.view_share = self._shares(view_mix)

    def _shares(self, view_mix: Mapping[str, float]) -> dict[str, float]:
        if self.views is None or len(self.views) != len(self.locs):
            raise ValueError("view_mix: needs each pair's view (pair_views, as long as pair_locations)")
        have = Counter(self.views)
        weights = {v: float(w) for v, w in view_mix.items() if w > 0}
        missing = sorted(v for v in weights if not have[v])
        if missing:
            raise ValueError(f"view_mix: no training pairs of view(s) {', '.join(missing)} "
                             f"(the data has {', '.join(sorted(have))})")
        if not weights:
            raise ValueError("view_mix: every weight is 0")
        n_locs = len({loc for loc, v in zip(self.locs, self.views) if v in weights})
        if n_locs < self.batch_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {n_locs} distinct locations of the "
                             "mixed views: a batch holds one pair per location")
        total = sum(weights.values())
        return {v: w / total for v, w in sorted(weights.items())}

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
        if self.view_share is not None:
            batches = self._balanced_batches(rng)
            self._cache = (*key, batches)
            return batches
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

    def _fits(self, i: int, in_batch: set[str], covered: set[str]) -> bool:
        """Pair ``i`` may join a batch holding the locations ``in_batch`` whose semi-positives are ``covered``."""
        loc = self.locs[i]
        if loc in in_batch or loc in covered:
            return False
        return self.semis is None or not (self.semis[i] & in_batch)

    def _quotas(self, credit: dict[str, float]) -> dict[str, int]:
        """Pairs per view in the next batch: the shares' whole parts, the remaining slots to the views owed
        most; what a view gets above or below its share is carried to the next batch (``credit``)."""
        assert self.view_share is not None
        for v, share in self.view_share.items():
            credit[v] += self.batch_size * share
        quota = {v: int(c) for v, c in credit.items()}
        rest = self.batch_size - sum(quota.values())
        for v in sorted(credit, key=lambda v: (credit[v] - quota[v], v), reverse=True)[:rest]:
            quota[v] += 1
        for v in quota:
            credit[v] -= quota[v]
        return quota

    def _balanced_batches(self, rng: random.Random) -> list[list[int]]:
        """Batches with ``view_share`` of each view; one pair per location and semi-positives apart, as always."""
        assert self.view_share is not None and self.views is not None
        views = list(self.view_share)
        pools = {v: [i for i, pv in enumerate(self.views) if pv == v] for v in views}
        queues: dict[str, deque[int]] = {v: deque() for v in views}
        # Counts, not sets: a view that cycles may hold a pair twice in its queue (once per cycle).
        live: Counter[int] = Counter()  # queue entries of a pair still to be drawn
        dead: Counter[int] = Counter()  # queue entries already drawn out of turn (as a hard negative)
        by_loc: dict[str, list[int]] = {}
        for v in views:
            for i in pools[v]:
                by_loc.setdefault(self.locs[i], []).append(i)

        def refill(v: str) -> None:
            order = list(pools[v])
            rng.shuffle(order)
            queues[v].extend(order)
            live.update(order)

        def next_fitting(v: str, in_batch: set[str], covered: set[str]) -> int | None:
            deferred: list[int] = []
            found = None
            refilled = False
            while found is None:
                if not queues[v]:
                    if refilled:
                        break  # a whole fresh cycle and nothing fits: the batch stays short
                    refill(v)
                    refilled = True
                i = queues[v].popleft()
                if dead[i]:
                    dead[i] -= 1
                    continue
                if self._fits(i, in_batch, covered):
                    found = i
                    live[i] -= 1
                else:
                    deferred.append(i)  # its location (or a tile covering it) is here already: a later batch
            queues[v].extendleft(reversed(deferred))
            return found

        for v in views:
            refill(v)
        n_batches = sum(len(p) for p in pools.values()) // self.batch_size
        credit = dict.fromkeys(views, 0.0)
        batches: list[list[int]] = []
        for _ in range(n_batches):
            need = self._quotas(credit)
            batch: list[int] = []
            in_batch: set[str] = set()
            covered: set[str] = set()

            def take(i: int) -> None:
                batch.append(i)
                in_batch.add(self.locs[i])
                need[self.views[i]] -= 1
                if self.semis is not None:
                    covered.update(self.semis[i])

            progressed = True
            while progressed and len(batch) < self.batch_size:
                progressed = False
                for v in views:
                    if need[v] <= 0:
                        continue
                    i = next_fitting(v, in_batch, covered)
                    if i is None:
                        need[v] = 0  # nothing of this view fits this batch
                        continue
                    take(i)
                    progressed = True
                    pulled = 0
                    for nb in self.neighbours.get(self.locs[i], []):  # hard negatives of a view with room left
                        if pulled >= self.n_hard or len(batch) >= self.batch_size:
                            break
                        j = next((j for j in by_loc.get(nb, ()) if live[j] > 0 and need[self.views[j]] > 0
                                  and self._fits(j, in_batch, covered)), None)
                        if j is not None:
                            live[j] -= 1
                            dead[j] += 1
                            take(j)
                            pulled += 1
            if len(batch) == self.batch_size or (batch and not self.drop_last):
                batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
