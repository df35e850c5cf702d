"""Ctrl-C or a scheduler's SIGTERM during training: finish the step, save a checkpoint, stop.

transformers' own ``enable_jit_checkpoint`` handles SIGTERM only and saves from inside the step;
this callback takes SIGINT and SIGTERM, stops at an optimizer-step boundary (so the checkpoint
resumes to the same losses), and agrees across ranks, so every process saves at the same step
(ZeRO-3 gathers collectively and would hang otherwise). A second signal stops at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from transformers import TrainerCallback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SaveOnInterrupt(TrainerCallback):
    """Turns the first SIGINT/SIGTERM into ``should_save`` + ``should_training_stop`` at the next step end."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopped_at: int | None = None  # global step of the checkpoint saved on interrupt
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.signum is not None:  # a second signal: do not wait for the step
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _anyone_interrupted(self, args) -> bool:  # noqa: ANN001
        flag = self.signum is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            device = args.device if dist.get_backend() == "nccl" else "cpu"
            t = torch.tensor([1 if flag else 0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.signum is None:
                self.signum = signal.SIGTERM  # another rank was told; stop with it
        return flag

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            # The last step: the run ends here anyway and saves its final weights. A checkpoint at max_steps would
            # be resumed one step past the end (transformers checks the bound only after a step).
            return control
        if self._anyone_interrupted(args):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self._restore()
