"""``gleamx merge``: fold a LoRA adapter into its base and write standalone weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gleamx.errors import GleamModelError, first_line
from gleamx.outputs import claim_folder


@dataclass
class MergedModel:
    """Where :func:`merge_adapter` saved the merged model and its processor."""

    out: Path

    def summary_lines(self) -> list[str]:
        return [f"merged model -> {self.out} (loads with AutoModelForImageTextToText.from_pretrained)"]


def merge_adapter(base: str, adapter: str | Path, out: str | Path, *, dtype: str = "auto",
                  overwrite: bool = False) -> MergedModel:
    """Load ``base`` + ``adapter``, merge, save model + processor to ``out`` (loads with AutoModelForImageTextToText).

    The adapter is loaded as ``gleamx-eval`` loads it (every tensor matched, old key layouts renamed),
    and the processor saved is the run's own when the adapter dir holds one (its pixel budget and its
    chat template), else the base's. ``out`` follows :mod:`gleamx.outputs` (never the base's or the adapter's
    folder; a folder of its own, replaced only with ``overwrite``).
    """
    from gleamx.models.adapter import load_for_inference

    adapter = Path(adapter)
    folder = claim_folder(out, "--out", command="merge", overwrite=overwrite, exclusive=True,
                          identity={"base": base, "adapter": str(adapter.resolve()), "dtype": dtype},
                          inputs={"--base": base, "--adapter": adapter})
    model, processor = load_for_inference(base, adapter, dtype=dtype, flag="--adapter", device=None)
    try:
        merged = model.merge_and_unload()
    except Exception as e:  # noqa: BLE001 - PEFT/torch errors; the user needs one line
        raise GleamModelError(f"--adapter {adapter}: could not be merged into {base!r} "
                              f"({first_line(e, with_type=True)})") from None
    merged.save_pretrained(folder.path)
    processor.save_pretrained(folder.path)
    folder.done()
    return MergedModel(folder.path)
