"""``gleamx eval`` under ``accelerate launch --num_processes N``: which process generates what, and how the answers
meet in the first process.

The first process (the main one) plans the run alone: it claims the output folder, reads the answers cache and
decides which batches are missing, then sends that plan to the others (or the one-line error that stopped it, so
they stop too, quietly). Every process takes a contiguous share of the planned batches
(``PartialState.split_between_processes``), generates it and appends each finished batch to its own log (the main
process to ``predictions.jsonl``, process r to ``predictions.rank<r>.jsonl``), so a kill loses no finished batch;
``gather_object`` then brings every answer to the main process, which appends the others' to ``predictions.jsonl``,
removes their logs, scores and writes the report. A run started again (with any number of processes) first folds
the logs a killed run left into ``predictions.jsonl`` (:func:`fold_rank_logs`), so nothing finished is generated
again.

One process (no ``accelerate launch``, or ``--num_processes 1``) imports neither torch nor accelerate here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gleamx.errors import GleamError, GleamFailedElsewhere

RANK_LOG = "predictions.rank{}.jsonl"
_RANK_LOG = re.compile(r"^predictions\.rank(\d+)\.jsonl$")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch: ``index`` of ``count`` processes, and the device its model goes to
    (``"auto"``: the GPU when there is one, as one process does)."""

    index: int = 0
    count: int = 1
    device: str = "auto"

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @classmethod
    def current(cls) -> Ranks:
        """The launch this process is part of: accelerate's process group when ``accelerate launch`` started more
        than one process, else one process (without importing torch)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        # cpu=True on a machine without a GPU (or a CPU launch config), else each process would look for one
        use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        state = PartialState(cpu=use_cpu)
        return cls(state.process_index, state.num_processes, str(state.device))

    def share(self, items: list[Any]) -> list[Any]:
        """This process's contiguous share of ``items`` (the first processes take one more when they do not
        divide evenly); all of them for one process."""
        if self.count == 1:
            return items
        from accelerate import PartialState

        with PartialState().split_between_processes(items) as mine:
            return list(mine)

    def from_main(self, value: Any) -> Any:
        """``value`` as the main process has it (what the others pass is ignored). A :class:`GleamError` sent by
        the main process is raised there and, quietly, in every other process."""
        if self.count > 1:
            from accelerate.utils import broadcast_object_list

            box = [value if self.is_main else None]
            broadcast_object_list(box, from_process=0)
            value = box[0]
        if isinstance(value, GleamError):
            raise value if self.is_main else GleamFailedElsewhere(str(value))
        return value

    def stop(self, error: GleamError) -> NoReturn:
        """Raise ``error`` in the main process, having told the others (they wait for the plan) to stop quietly."""
        self.from_main(error)
        raise error  # from_main raised it already; for the type checker

    def gather(self, rows: list[Any]) -> list[list[Any]]:
        """Every process's ``rows``, in process order, in every process."""
        if self.count == 1:
            return [rows]
        from accelerate.utils import gather_object

        return gather_object([rows])


def rank_log(out: Path, index: int) -> Path:
    """Where process ``index`` appends its answers (the main process: ``predictions.jsonl`` itself)."""
    return out / ("predictions.jsonl" if index == 0 else RANK_LOG.format(index))


def rank_logs(out: Path) -> list[Path]:
    """The other processes' logs in ``out``, in process order."""
    found = [(int(m.group(1)), p) for p in out.glob("predictions.rank*.jsonl") if (m := _RANK_LOG.match(p.name))]
    return [p for _, p in sorted(found)]


def fold_rank_logs(out: Path) -> int:
    """Append every whole line of the other processes' logs (left by a killed multi-process run) to
    ``predictions.jsonl`` and remove them; returns how many logs were folded. Killed between the append and the
    removal, a rerun appends them again: a repeated row is the same answer, read once."""
    from gleamx.eval.appendlog import repair_tail

    logs = rank_logs(out)
    if not logs:
        return 0
    pred_path = out / "predictions.jsonl"
    repair_tail(pred_path)
    with pred_path.open("ab") as f:
        for log in logs:
            repair_tail(log)  # a batch half-written by the kill is generated again
            f.write(log.read_bytes())
        f.flush()
        os.fsync(f.fileno())
    for log in logs:
        log.unlink()
    return len(logs)


__all__ = ["RANK_LOG", "Ranks", "fold_rank_logs", "rank_log", "rank_logs"]
