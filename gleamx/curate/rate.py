"""``gleamx review serve --predictions``: people rate a model's answers, for ``gleamx eval --ratings``.

The page shows each answer of a predictions file beside its pair and the reference explanation; the reviewer rates
the answer faithful / partly / wrong and marks its wrong claims (sentences of the answer, or typed). Every rating is
one line appended (and fsynced) to the ratings file, in :mod:`gleamx.eval.ratings`' format with the rated answer as
``text``; the file is never rewritten, and the last line of an id and language wins. ``gleamx eval --ratings``
reads that file and uses a rating only where its text is the answer it scored, so the metrics and the people judge
the same text.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from gleamx.curate.review import now_iso, unknown_sample
from gleamx.eval.appendlog import append_record
from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.ratings import Rating, check_rating, normalized, read_ratings

EVAL_RECORD = "eval_config.json"  # what gleamx eval writes into its --output


def _eval_output(predictions: str | os.PathLike) -> Path | None:
    """The ``gleamx eval`` output folder ``predictions`` lies in (the folder holds its ``eval_config.json``)."""
    folder = Path(predictions).expanduser().resolve().parent
    return folder if (folder / EVAL_RECORD).is_file() else None


def read_answers(path: str | os.PathLike) -> dict[str, str]:
    """``{id: answer}`` to rate. ``gleamx eval``'s own ``predictions.jsonl`` is its cache: rows of its recorded key
    only, and where a sample was generated again (its input changed) the last row is the newest answer. Any other
    file is read as ``gleamx eval --predictions`` reads it (every line checked, an id once)."""
    from gleamx.eval.appendlog import read_records
    from gleamx.eval.run import read_predictions

    path = Path(path)
    folder = _eval_output(path)
    if folder is not None and path.name == "predictions.jsonl":
        try:
            key = json.loads((folder / EVAL_RECORD).read_text(encoding="utf-8")).get("key")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            key = None
        answers = {row["id"]: row["prediction"] for _, row in read_records(path)
                   if isinstance(row.get("id"), str) and isinstance(row.get("prediction"), str)
                   and (key is None or row.get("config") == key)}
        if not answers:
            raise GleamDataError.at(str(path), None, "prediction", "no answers of the run recorded in "
                                                                   f"{folder / EVAL_RECORD} (run gleamx eval first)")
        return answers
    return {k: row["prediction"] for k, row in read_predictions(path).items()}


def check_ratings_path(ratings: str | os.PathLike, predictions: str | os.PathLike) -> Path:
    """``ratings`` as the file to append to: not the predictions file, not a folder, and not inside the eval output
    that holds the predictions (``gleamx eval --ratings`` never reads an input from its own ``--output``)."""
    path = Path(ratings)
    if path.is_dir():
        raise GleamConfigError(f"--ratings: {ratings} is a folder (expected the ratings file to append to)")
    target = path.expanduser().resolve()
    if target == Path(predictions).expanduser().resolve():
        raise GleamConfigError(f"--ratings: {ratings} is the --predictions file; name a ratings file of its own")
    folder = _eval_output(predictions)
    if folder is not None and folder in target.parents:
        raise GleamConfigError(f"--ratings: {ratings} lies in gleamx eval's output folder {folder}, which that eval "
                               "would refuse as its input; keep the ratings outside it (e.g. ratings/MODEL-en.jsonl)")
    return path


class RatingLog:
    """The ratings file: whole lines appended, flushed and fsynced, one at a time; ``latest`` by (id, lang)."""

    def __init__(self, path: str | os.PathLike, samples: dict[str, Any], split: str) -> None:
        from gleamx.eval.appendlog import end_with_newline

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        end_with_newline(self.path)  # a killed server's half line goes before anything is appended
        self._lock = threading.Lock()
        self.latest: dict[tuple[str, str], Rating] = read_ratings(self.path) if self.path.is_file() else {}
        for rating in self.latest.values():
            if rating.id not in samples:
                raise unknown_sample(str(self.path), rating.line, rating.id, split)

    def append(self, sample_id: str, lang: str, text: str, rating: Any, wrong_claims: Any) -> Rating:
        checked = check_rating(rating, wrong_claims, file="POST /api/rating", line=None)
        record = {"id": sample_id, "lang": lang, **checked, "text": text, "time": now_iso()}
        with self._lock:
            append_record(self.path, record)
            saved = Rating(sample_id, lang, checked["rating"], tuple(checked["wrong_claims"]), text, None)
            self.latest[sample_id, lang] = saved
        return saved


class RatingApp:
    """The rating page's data: the split's samples that have an answer, the answers, and the ratings file (the
    review server's other app, beside :class:`gleamx.curate.review.ReviewApp`)."""

    post_path = "/api/rating"
    body_fields = "{id, rating, wrong_claims}"
    writes = "ratings"

    def __init__(self, samples: list[Any], answers: dict[str, str], ratings: str | os.PathLike, *, lang: str,
                 split: str, predictions: str | os.PathLike = "") -> None:
        self.samples = {s.id: s for s in samples}
        self.order = [s.id for s in samples if s.id in answers]
        if not self.order:
            raise GleamDataError.at(str(predictions), None, "id", f"no answer for a sample of split {split!r} "
                                                                  "(rate the predictions of this split)")
        self.answers, self.lang, self.split, self.predictions = answers, lang, split, str(predictions)
        self.n_without_answer = len(samples) - len(self.order)
        self.n_other_ids = sum(1 for i in answers if i not in self.samples)
        self.log = RatingLog(ratings, self.samples, split)

    def _current(self, sample_id: str) -> tuple[Rating | None, bool]:
        """The rating of this answer, and whether the file rates another answer of the sample (an earlier run's)."""
        rating = self.log.latest.get((sample_id, self.lang))
        if rating is None:
            return None, False
        if rating.text is not None and normalized(rating.text) != normalized(self.answers[sample_id]):
            return None, True
        return rating, False

    def state(self, sample_id: str) -> dict[str, Any]:
        """What the page shows for a sample: the pair, the answer, the reference and the answer's rating."""
        s = self.samples[sample_id]
        rating, other = self._current(sample_id)
        return {"id": s.id, "label": bool(s.label), "query_view": s.query_view, "lang": self.lang,
                "answer": self.answers[s.id], "reference": s.explanation.get(self.lang) or "",
                "rating": rating.rating if rating else None,
                "wrong_claims": list(rating.wrong_claims) if rating else [], "rated_other_answer": other}

    def listing(self) -> dict[str, Any]:
        return {"mode": "rate", "split": self.split, "lang": self.lang, "predictions": self.predictions,
                "ratings": str(self.log.path), "n": len(self.order), "n_without_answer": self.n_without_answer,
                "samples": [self.state(i) for i in self.order]}

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append the rating in ``body`` of the answer to its id; the sample's new state."""
        sample_id = body.get("id")
        if not isinstance(sample_id, str) or sample_id not in self.answers or sample_id not in self.samples:
            raise GleamDataError.at("POST /api/rating", None, "id", f"unknown id {sample_id!r} (not a sample of split "
                                                                    f"{self.split!r} with an answer to rate)")
        self.log.append(sample_id, self.lang, self.answers[sample_id], body.get("rating"), body.get("wrong_claims"))
        return self.state(sample_id)

    def describe(self, url: str) -> str:
        """The line ``gleamx review serve --predictions`` prints once the page is up."""
        rated = sum(1 for i in self.order if self._current(i)[0] is not None)
        notes = [f"{self.n_without_answer} samples of the split have no answer there"] if self.n_without_answer else []
        notes += [f"{self.n_other_ids} answers are of ids not in the split"] if self.n_other_ids else []
        return (f"rating the {self.lang} answers of {len(self.order)} pairs of split {self.split} from "
                f"{self.predictions} at {url} (Ctrl+C stops; every rating is saved at once to {self.log.path}; "
                f"{rated} rated so far" + "".join(f"; {n}" for n in notes) + ")")


__all__ = ["RatingApp", "RatingLog", "check_ratings_path", "read_answers"]
