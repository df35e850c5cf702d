"""People's ratings of explanations: the scale, one rating checked, and the ratings file ``gleamx eval --ratings``
reads.

A person rates an explanation as a whole: ``faithful`` (every claim holds), ``partly`` (some claims are wrong) or
``wrong`` (it rests on wrong claims), and may list the claims that are wrong. The scale is ordinal:
wrong = 0 < partly = 1 < faithful = 2 (:data:`LEVEL`).

A ratings file is JSONL, one rating of one model answer a line::

    {"id": "a", "lang": "en", "rating": "partly", "wrong_claims": ["The river bends east."],
     "text": "<the answer that was rated>", "time": "2026-01-01T00:00:00+00:00"}

``gleamx review serve --predictions`` appends such lines; it is a log, so the last line of an id and language wins.
``wrong_claims``, ``text`` and ``time`` are optional in a file made elsewhere. ``text`` is what makes a rating
checkable: ``gleamx eval`` uses a rating that has one only when it equals the answer it scores.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gleamx.choices import LANGS
from gleamx.errors import GleamDataError

RATINGS: tuple[str, ...] = ("wrong", "partly", "faithful")
"""The scale, lowest first."""
LEVEL: dict[str, int] = {r: i for i, r in enumerate(RATINGS)}
MAX_CLAIMS = 100
MAX_CLAIM_CHARS = 20_000


def normalized(text: str) -> str:
    """``text`` with its line ends as ``\\n`` (a spreadsheet or a browser may have written ``\\r\\n``)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_hash(text: str) -> str:
    """A short hash naming the exact text a rating is of (line ends normalized)."""
    return hashlib.blake2b(normalized(text).encode("utf-8"), digest_size=8).hexdigest()


def check_rating(rating: Any, wrong_claims: Any, *, file: str, line: int | None,
                 prefix: str = "") -> dict[str, Any]:
    """``{"rating", "wrong_claims"}`` as stored, or a :class:`GleamDataError` naming ``file:line`` and the field
    (``prefix`` + ``rating`` / ``wrong_claims``). A faithful explanation has no wrong claims."""
    def bad(name: str, message: str) -> GleamDataError:
        return GleamDataError.at(file, line, f"{prefix}{name}", message)

    if rating not in RATINGS:
        raise bad("rating", f"expected one of {', '.join(RATINGS)}, got {rating!r}")
    if wrong_claims is None:
        wrong_claims = []
    if not isinstance(wrong_claims, list):
        raise bad("wrong_claims", f"expected a list of texts, got {type(wrong_claims).__name__}")
    if len(wrong_claims) > MAX_CLAIMS:
        raise bad("wrong_claims", f"more than {MAX_CLAIMS} claims ({len(wrong_claims)})")
    claims = []
    for i, claim in enumerate(wrong_claims):
        if not isinstance(claim, str) or not claim.strip():
            raise bad(f"wrong_claims[{i}]", f"expected a non-empty text, got {claim!r}")
        if len(claim) > MAX_CLAIM_CHARS:
            raise bad(f"wrong_claims[{i}]", f"longer than {MAX_CLAIM_CHARS} characters ({len(claim)})")
        if "\n" in normalized(claim).strip():  # a sheet's cell holds one claim a line
            raise bad(f"wrong_claims[{i}]", "more than one line (give each claim on its own)")
        claims.append(normalized(claim).strip())
    if rating == "faithful" and claims:
        raise bad("wrong_claims", f"{len(claims)} wrong claim(s) given but the rating is faithful (rate it partly "
                                  "or wrong, or clear the claims)")
    return {"rating": rating, "wrong_claims": claims}


@dataclass(frozen=True)
class Rating:
    """One person's rating of one answer: ``text`` is the answer rated (None: not said), ``line`` where it was read
    (None: not read from a file)."""

    id: str
    lang: str
    rating: str
    wrong_claims: tuple[str, ...]
    text: str | None
    line: int | None

    @property
    def level(self) -> int:
        return LEVEL[self.rating]

    def as_row(self) -> dict[str, Any]:
        """What ``per_sample.jsonl`` records of it."""
        return {"rating": self.rating, "wrong_claims": list(self.wrong_claims)}


def rating_of_row(row: dict[str, Any], *, file: str, line: int) -> Rating:
    """One line of a ratings file, checked (each bad field one ``file:line: field: ...`` error)."""
    sample_id = row.get("id")
    if not isinstance(sample_id, str) or not sample_id:
        raise GleamDataError.at(file, line, "id", f"expected the sample's id (text), got {sample_id!r}")
    lang = row.get("lang")
    if lang not in LANGS:
        raise GleamDataError.at(file, line, "lang", f"expected one of {', '.join(LANGS)} (the answer's language), "
                                                    f"got {lang!r}")
    checked = check_rating(row.get("rating"), row.get("wrong_claims"), file=file, line=line)
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise GleamDataError.at(file, line, "text", f"expected the rated answer (text) or null, got "
                                                    f"{type(text).__name__}")
    return Rating(sample_id, lang, checked["rating"], tuple(checked["wrong_claims"]), text, line)


def read_ratings(path: str | os.PathLike) -> dict[tuple[str, str], Rating]:
    """``{(id, lang): rating}`` from a ratings file; the last line of an id and language wins (a log). Every line is
    read whole: one that is not a JSON object, or a bad field, is one ``file:line: field: ...`` error."""
    from gleamx.data.jsonl import read_json_objects

    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "ratings file not found (expected JSONL with id, lang, "
                                                         "rating; gleamx review serve --predictions writes one)")
    latest: dict[tuple[str, str], Rating] = {}
    for line, row in read_json_objects(path):
        rating = rating_of_row(row, file=str(path), line=line)
        latest[rating.id, rating.lang] = rating
    return latest


__all__ = ["LEVEL", "RATINGS", "Rating", "check_rating", "normalized", "rating_of_row", "read_ratings", "text_hash"]
