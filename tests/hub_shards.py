"""A local stand-in of a Hub dataset repo: a GLEAM-X dataset's split written as Parquet shards with the images
embedded (what ``gleamx data push`` uploads), for the tests that train from a stream."""

from __future__ import annotations

from pathlib import Path

N_SHARDS = 4


def write_parquet_shards(data: Path, out: Path, n_shards: int = N_SHARDS, split: str = "train") -> Path:
    """``out/data/<split>-0000i-of-0000n.parquet`` with the images embedded: what a Hub dataset repo holds."""
    from gleamx.data import load_samples
    from gleamx.data.schema import with_image_bytes

    ds = with_image_bytes(load_samples(data, split=split).dataset)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for i in range(n_shards):
        shard = out / "data" / f"{split}-{i:05d}-of-{n_shards:05d}.parquet"
        ds.shard(n_shards, i, contiguous=True).to_parquet(str(shard))
    return out
