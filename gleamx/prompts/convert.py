"""``gleamx data convert``: read any gleamx-readable data (gleamx JSONL, ShareGPT, ...) and write it as gleamx JSONL
or as ShareGPT/LLaMA-Factory conversations (which builds the prompts, so it lives here, above the data layer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gleamx.data.config import ConvertConfig
from gleamx.outputs import claim_file


@dataclass
class Conversion:
    """What :func:`convert` read and wrote."""

    out: Path
    to: str  # "jsonl" or "sharegpt"
    n_samples: int  # samples read
    n_written: int  # samples (jsonl) or conversations (sharegpt: one per language)
    n_bad: int = 0  # records skipped (``--skip-bad``)
    first_problem: str | None = None  # the first of them

    def summary_lines(self) -> list[str]:
        lines = [f"skipped {self.n_bad} bad record(s) (--skip-bad); first: {self.first_problem}"] if self.n_bad else []
        if self.to == "sharegpt":
            return lines + [f"wrote {self.n_written} conversations from {self.n_samples} samples to {self.out} "
                            "(+ dataset_info.json)"]
        return lines + [f"wrote {self.n_written} samples to {self.out}"]


def convert(cfg: ConvertConfig) -> Conversion:
    """Read ``cfg.src`` (skipping bad records with ``cfg.skip_bad``) and write it to ``cfg.out`` as ``cfg.to``."""
    from gleamx.data import load_samples, write_samples
    from gleamx.prompts.sharegpt import write_sharegpt

    res = load_samples(cfg.src, format=cfg.format, split=cfg.split, columns=cfg.columns, skip_bad=cfg.skip_bad,
                       allow_outside_paths=cfg.allow_outside_paths)
    claim_file(cfg.out, "--out", overwrite=cfg.overwrite, inputs={"src": cfg.src})
    if cfg.to == "sharegpt":
        n = write_sharegpt(res.dataset, cfg.out, lang=cfg.lang, task=cfg.task)
    else:
        n = write_samples(res.dataset, cfg.out)
    return Conversion(Path(cfg.out), cfg.to, len(res.dataset), n, res.n_bad,
                      str(res.problems[0]) if res.problems else None)


__all__ = ["Conversion", "convert"]
