"""The app's model-facing side, with no UI: verify one pair, localize one query.

Everything goes through the functions ``gleamx eval`` and ``gleamx localize`` use, so the app answers as
the command line does for the same pair:

* the processor (pixel budget, chat template) and the model come from
  :func:`gleamx.models.adapter.load_inference_processor` / :func:`~gleamx.models.adapter.load_for_inference`;
* decoding is :func:`gleamx.eval.decoding.greedy_decoding` with the checkpoint's stop tokens, as an
  ``hf_generation_config``; prompts and batches come from :func:`gleamx.eval.generate.generate_batch`, and
  P(yes) from :func:`gleamx.eval.generate.verdict_p_yes` on each generated batch;
* candidates come from the retrieval encoder's embeddings (the gallery's read from and written to
  :class:`gleamx.retrieval.embed_cache.EmbeddingCache`, under the key ``gleamx localize`` uses) and
  :func:`gleamx.retrieval.search.topk_search`, and are reranked by :func:`gleamx.retrieval.localize.rerank`.

Uploads reach the engine as bytes and are decoded here, after a size check (bytes, then the pixel count from
the header): a path from a user is never opened. Every bad upload is an :class:`UploadError`, one line.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gleamx.app.assets import Assets
from gleamx.app.config import MB, AppConfig
from gleamx.checks import check_choice
from gleamx.choices import LANGS, TASKS, VIEWS
from gleamx.data.images import ImageShapeError, ImageTooLargeError, open_image
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamDataError, GleamError
from gleamx.task.verdict import parse_verdict

SOURCE = "gleamx-app"
STREAM_TIMEOUT_S = 900.0  # a generation thread that sends nothing for this long has failed


class UploadError(GleamError):
    """An upload the app refuses (too large, not an image, a missing field); its message is one line."""


def load_upload(data: Any, what: str, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The RGB image in ``data`` (the uploaded file's bytes), after the byte and pixel caps.

    Anything but bytes (a path string above all) is refused: the app never opens a file a user names.
    """
    if data is None:
        raise UploadError(f"{what}: missing (upload an image)")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UploadError(f"{what}: expected the uploaded file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise UploadError(f"{what}: {len(data) / MB:.1f} MB, over the app's limit of {max_bytes / MB:g} MB")
    if not data:
        raise UploadError(f"{what}: empty file (upload a PNG, JPEG or WebP image)")
    try:
        return open_image(data, max_pixels=max_pixels, name=what)
    except ImageTooLargeError as e:
        size = re.sub(r",? over the limit of .*$", "", e.problem.message)
        raise UploadError(f"{what}: {size}, over the app's limit of {max_pixels:,} pixels") from None
    except ImageShapeError as e:
        raise UploadError(f"{what}: {e.problem.message}") from None
    except GleamDataError as e:
        reason = re.sub(r"\s*<_io\.BytesIO object[^>]*>", "", e.problem.message)  # no object reprs for a user
        raise UploadError(f"{what}: not a readable image: {reason}") from None


@dataclass
class Pair:
    """One query view and one satellite image, decoded."""

    query: Image.Image
    satellite: Image.Image | str | Path  # a path only for the server's own gallery tiles
    view: str

    def sample(self, sample_id: str = "app") -> GleamSample:
        """The pair as a GLEAM-X sample (its label is unknown and unused: nothing is scored)."""
        if self.view not in VIEWS:
            raise UploadError(f"view: expected one of {', '.join(VIEWS)}, got {self.view!r}")
        sat = self.satellite if isinstance(self.satellite, Image.Image) else str(self.satellite)
        return GleamSample(id=sample_id, query_image=self.query, satellite_image=sat, query_view=self.view,
                           label=False, source=SOURCE, split="test")


@dataclass
class Verification:
    """The model's answer for a pair, its parsed verdict (``None``: no verdict line) and P(yes)."""

    answer: str
    verdict: bool | None
    p_yes: float | None


@dataclass
class Candidate:
    """One satellite tile proposed for a query: its rank by retrieval and after verification (0 = best, as in
    ``gleamx localize``'s ranked.jsonl)."""

    location_id: str
    tile: Path
    retrieval_rank: int
    retrieval_score: float
    rank: int | None = None
    verification: Verification | None = None


class _Streaming:
    """The model, with a streamer given to every ``generate`` call: ``generate_batch`` (the eval's own code,
    used as is) takes no streamer, and a streamer only watches the tokens, it changes none."""

    def __init__(self, model: Any, streamer: Any) -> None:
        self._model, self._streamer = model, streamer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.generate(*args, streamer=self._streamer, **kwargs)


class Engine:
    """The loaded MLLM (and, with an encoder and a gallery, the retrieval encoder); one request at a time."""

    def __init__(self, cfg: AppConfig, assets: Assets) -> None:
        from gleamx.eval.decoding import checkpoint_stop_token_ids
        from gleamx.models.adapter import load_for_inference, load_inference_processor

        self.cfg, self.assets = cfg, assets
        processor, self.processor_source = load_inference_processor(
            assets.model, assets.adapter, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        self.model, self.processor = load_for_inference(assets.model, assets.adapter, dtype=cfg.dtype,
                                                        processor=processor)
        self.stop_ids = checkpoint_stop_token_ids(assets.model, self.processor.tokenizer)
        # The model is not thread-safe and one generation already uses every core: requests take turns
        # (the UI's queue does too; this also covers Python callers).
        self.lock = threading.Lock()
        self.encoder = self.gallery = self.gallery_embeddings = None
        if assets.encoder and assets.gallery:
            self._load_gallery()

    # --- inputs -------------------------------------------------------------------------------------------

    def image(self, data: Any, what: str) -> Image.Image:
        """An uploaded image, checked against the app's caps (see :func:`load_upload`)."""
        return load_upload(data, what, max_bytes=self.cfg.max_upload_bytes, max_pixels=self.cfg.max_upload_pixels)

    def pair(self, query: Any, satellite: Any, view: str) -> Pair:
        """A pair from two uploads' bytes."""
        check_choice("view", view, VIEWS)
        return Pair(self.image(query, "query image"), self.image(satellite, "satellite image"), view)

    # --- verification -------------------------------------------------------------------------------------

    def generation_config(self, task: str) -> Any:
        """gleamx-eval's decoding for ``task`` (greedy, explicit, the checkpoint's stop tokens)."""
        from gleamx.eval.decoding import greedy_decoding, hf_generation_config

        return hf_generation_config(greedy_decoding(self.cfg.new_tokens(task), self.cfg.repetition_penalty),
                                    stop_ids=self.stop_ids, pad_token_id=self.processor.tokenizer.pad_token_id)

    def _answer_batch(self, samples: list[GleamSample], lang: str, task: str, model: Any = None
                      ) -> list[Verification]:
        """Answers and P(yes) for one batch, as gleamx-eval computes them for one batch of its grid."""
        from gleamx.eval.generate import generate_batch, verdict_p_yes

        answers = generate_batch(model or self.model, self.processor, samples, lang, task,
                                 generation_config=self.generation_config(task))
        p_yes = verdict_p_yes(self.model, self.processor, samples, answers, lang, task, batch_size=len(samples))
        return [Verification(a, parse_verdict(a), p) for a, p in zip(answers, p_yes)]

    def verify_stream(self, pair: Pair, lang: str = "en", task: str = "explain") -> Iterator[str | Verification]:
        """The answer's text so far, as it is generated, then the :class:`Verification`."""
        from transformers import TextIteratorStreamer

        check_choice("language", lang, LANGS)
        check_choice("task", task, TASKS)
        sample = pair.sample()
        with self.lock:
            streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                            timeout=STREAM_TIMEOUT_S)
            result: dict[str, Any] = {}

            def run() -> None:
                try:
                    result["answer"] = self._answer_batch([sample], lang, task, _Streaming(self.model, streamer))[0]
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
                    result["error"] = e
                    streamer.end()  # the reader must not wait for tokens that will never come

            worker = threading.Thread(target=run, name="gleamx-app-generate", daemon=True)
            worker.start()
            try:
                text = ""
                for piece in streamer:
                    text += piece
                    yield text.strip()
            finally:
                worker.join()
            if "error" in result:
                raise result["error"]
            yield result["answer"]

    def verify(self, pair: Pair, lang: str = "en", task: str = "explain") -> Verification:
        """The model's answer, verdict and P(yes) for ``pair`` (what ``gleamx eval`` predicts for it)."""
        last: Any = None
        for last in self.verify_stream(pair, lang, task):
            pass
        return last

    # --- localization -------------------------------------------------------------------------------------

    def _load_gallery(self) -> None:
        from gleamx.retrieval.data import load_retrieval
        from gleamx.retrieval.embed import embed_images
        from gleamx.retrieval.embed_cache import EmbeddingCache, cache_dir
        from gleamx.retrieval.encoder import load_encoder
        from gleamx.retrieval.from_pairs import retrieval_root

        a = self.assets
        # GLEAM-X pairs become a layout once, in a directory of their own under the work dir
        tag = hashlib.sha256(f"{a.gallery}|{a.split}".encode()).hexdigest()[:12]
        root = retrieval_root(str(a.gallery), a.split, self.cfg.work_dir() / "layouts" / tag, lambda m: None)
        self.gallery = load_retrieval(root, a.split)
        if not self.gallery.gallery:
            raise GleamDataError.at(str(a.gallery), None, "gallery", f"no satellite tiles in split {a.split!r}")
        self.encoder = load_encoder(str(a.encoder)).eval()
        cache = cache_dir(self.cfg.embedding_cache)
        # the same call (and batch size) as gleamx localize's: both read and write one cache entry
        self.gallery_embeddings = embed_images(self.encoder, [t.image for t in self.gallery.gallery], desc="gallery",
                                               cache=EmbeddingCache(cache) if cache else None)

    @property
    def can_localize(self) -> bool:
        return self.gallery is not None

    def candidates(self, query: Image.Image, k: int) -> list[Candidate]:
        """The retrieval encoder's top-``k`` gallery tiles for ``query`` (fewer when the gallery is smaller), best first."""
        import torch

        from gleamx.retrieval.search import topk_search

        if self.gallery is None:
            raise UploadError("localize: this app has no gallery (start it with --encoder and --gallery)")
        k = max(1, min(int(k), len(self.gallery.gallery)))
        device = next(self.encoder.parameters()).device
        with torch.inference_mode():
            q = self.encoder(self.encoder.transform()(query).unsqueeze(0).to(device)).float().cpu()
        scores, idx = topk_search(q, self.gallery_embeddings, k)
        tiles = self.gallery.gallery
        return [Candidate(tiles[i].location_id, tiles[i].image, rank, float(s))
                for rank, (i, s) in enumerate(zip(idx[0].tolist(), scores[0].tolist()))]

    def localize_stream(self, query: Image.Image, view: str, lang: str = "en", task: str = "label",
                        k: int | None = None) -> Iterator[list[Candidate]]:
        """The candidates after each verified batch (retrieval order, answers filled in so far), then reranked
        as ``gleamx localize`` ranks them (``rank`` set)."""
        from gleamx.retrieval.localize import rerank

        check_choice("view", view, VIEWS)
        check_choice("language", lang, LANGS)
        check_choice("task", task, TASKS)
        with self.lock:
            cands = self.candidates(query, k or self.cfg.k)
            yield cands
            samples = [Pair(query, c.tile, view).sample(f"query@{c.location_id}") for c in cands]
            bs = self.cfg.batch_size
            for start in range(0, len(samples), bs):
                for c, v in zip(cands[start:start + bs], self._answer_batch(samples[start:start + bs], lang, task)):
                    c.verification = v
                yield cands
        rows = [{"verdict": c.verification.verdict, "p_yes": c.verification.p_yes, "retrieval_rank": c.retrieval_rank,
                 "candidate": c} for c in cands]
        for after, row in enumerate(rerank(rows)):
            row["candidate"].rank = after
        yield sorted(cands, key=lambda c: c.rank)

    def localize(self, query: Image.Image, view: str, lang: str = "en", task: str = "label",
                 k: int | None = None) -> list[Candidate]:
        """The query's top-k tiles, each verified and explained, reranked (best first)."""
        last: list[Candidate] = []
        for last in self.localize_stream(query, view, lang, task, k):
            pass
        return last


__all__ = ["Candidate", "Engine", "Pair", "UploadError", "Verification", "load_upload"]
