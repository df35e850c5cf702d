"""Full-model reloads the Trainer does by itself (resume, best checkpoint), made to load every tensor.

``save_pretrained`` writes Qwen2/2.5-VL weights in the checkpoint's own layout (``model.*``, ``visual.*``), while
transformers' Trainer reloads a full model's ``model.safetensors`` with ``load_state_dict(strict=False)`` on the
module's names (``model.language_model.*``, ``model.visual.*``): nothing matches, only a warning is logged, and a
resumed run goes on from the base weights with the checkpoint's optimizer, or the last step is saved as the best.
DeepSpeed, FSDP and PEFT adapters load their own way and are left to the Trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


class SavedWeightsReload:
    """Trainer mixin: a full model's checkpoint is reloaded through :func:`gleamx.models.adapter.load_saved_weights`
    (renamed keys, every tensor or one :class:`~gleamx.errors.GleamModelError` line). Put it before the TRL
    trainer in the bases."""

    def _own_full_reload(self, folder: str | Path) -> bool:
        folder = Path(folder)
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(self.model, "get_base_model")
                    or not any((folder / f).is_file() for f in FULL_WEIGHTS))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if not self._own_full_reload(resume_from_checkpoint):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from gleamx.models.adapter import load_saved_weights

        load_saved_weights(self.model if model is None else model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if not self._own_full_reload(self.state.best_model_checkpoint):
            return super()._load_best_model()
        from gleamx.models.adapter import load_saved_weights

        load_saved_weights(self.model, self.state.best_model_checkpoint)
