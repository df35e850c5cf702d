"""The ``MetricInfo`` every gleamx explanation metric shares: one prediction and one reference string."""

from __future__ import annotations

import datasets
import evaluate


def text_pair_info(description: str, kwargs_description: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description=kwargs_description,
        features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
    )
