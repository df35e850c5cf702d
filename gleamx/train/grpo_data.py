"""GLEAM-X samples -> a TRL GRPO prompt dataset: ``prompt`` (user turn: two image placeholders + text), ``images``
(query, satellite), and the columns the rewards read: ``label``, ``lang``, ``task``, ``reference``.

Every sample yields one prompt per requested language, with or without an explanation: the verdict is verified
against the label, so a sample needs a label and nothing else. ``reference`` is the reference answer in that
language where the sample has one (``reference_similarity`` skips the others). Built as a ``.map`` over the
lazily decoded :data:`~gleamx.data.schema.FEATURES` dataset, like the SFT dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from gleamx.data.arrow import Rows, batch_rows, map_batches
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamDataError
from gleamx.prompts import build_answer, build_messages, sample_languages
from gleamx.task import IMAGE_ORDER

_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
GRPO_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "prompt": [{"role": datasets.Value("string"), "content": [_PART]}],
        "images": datasets.Sequence(datasets.Image()),
        "label": datasets.Value("bool"),
        "lang": datasets.Value("string"),
        "task": datasets.Value("string"),
        "reference": datasets.Value("string"),  # the reference answer (explanation + verdict line) or None
    }
)


@dataclass
class GRPOData:
    dataset: datasets.Dataset | datasets.IterableDataset
    n_samples: int | None  # None for a stream (not counted ahead of reading it), as the two counts below
    n_positive: int | None  # prompts whose pair matches
    n_with_reference: int | None


def build_grpo_dataset(data: Rows, lang: str = "both", task: str = "explain") -> GRPOData:
    """One prompt per sample and language (``en``, ``zh`` or ``both``), images in :data:`IMAGE_ORDER`."""
    ds = data
    for name in IMAGE_ORDER:  # the stored {"bytes", "path"} values pass through undecoded
        ds = ds.cast_column(name, datasets.Image(decode=False))

    def convert(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in GRPO_FEATURES}
        for row in batch_rows(batch):
            sample = GleamSample.from_features_dict(row)
            for lg in sample_languages(sample, lang, "label"):  # a label is all a verdict reward needs
                prompt = build_messages(sample, lg, task, with_answer=False)
                for m in prompt:
                    m["content"] = [{"type": p["type"], "text": p.get("text")} for p in m["content"]]
                has_reference = task == "explain" and bool(sample.explanation.get(lg))
                out["id"].append(f"{sample.id}#{lg}")
                out["prompt"].append(prompt)
                out["images"].append([row[f] for f in IMAGE_ORDER])
                out["label"].append(bool(sample.label))
                out["lang"].append(lg)
                out["task"].append(task)
                out["reference"].append(build_answer(sample, lg, task) if has_reference else None)
        return out

    if isinstance(ds, datasets.IterableDataset):  # converted as it is read
        return GRPOData(map_batches(ds, convert, GRPO_FEATURES), None, None, None)
    grpo = map_batches(ds, convert, GRPO_FEATURES) if len(ds) else ds
    if len(grpo) == 0:
        raise GleamDataError.at("dataset", None, "label", "no sample to train on (GRPO verifies verdicts against "
                                                          "labels: nothing to verify)")
    labels = grpo["label"]
    return GRPOData(grpo, len(ds), sum(labels), sum(1 for r in grpo["reference"] if r))
