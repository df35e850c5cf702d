"""Configs of the commands that use a trained retrieval encoder: ``gleamx retrieval eval`` and ``gleamx localize``
(training's config is :class:`gleamx.retrieval.config.RetrievalConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gleamx.checks import (BATCH_MAX, CANDIDATES_MAX, COUNT_MAX, SIDE_MAX, TOKENS_MAX, WORKERS_MAX, check_choice,
                           check_given, check_int, check_pixel_budget, check_positive, check_ranges, comma_list,
                           field_help, pixel_budget_option, pixel_floor_option, shown)
from gleamx.choices import DTYPES, LANGS, TASKS, Dtype, Lang, Task
from gleamx.errors import GleamConfigError
from gleamx.retrieval.index import IndexKind, IndexOptions, index_option

_VIEWS_HELP = "query views, comma-separated (default: all)"


def _int_list(flag: str, value: list | None) -> list[int] | None:
    """``--ks 1,5,10`` (or ``1 5 10``, or a YAML list) as integers >= 1."""
    try:
        ks = comma_list(value, int)
    except ValueError:
        ks = None
        bad = True
    else:
        bad = ks is not None and (not ks or min(ks) < 1)
    if bad:
        raise GleamConfigError(f"{flag}: expected comma-separated integers >= 1, got {shown(value)}")
    return ks


_DATA_HELP = ("a retrieval layout (a dir holding retrieval/), or GLEAM-X pairs (dir, file or Hub id): their "
              "satellite tiles are the gallery, the query views of positive pairs the queries")


_CACHE_HELP = ("directory of cached embeddings (.safetensors keyed by the encoder's weights and preprocessing and "
               "the image list; default $GLEAMX_CACHE/embeddings or ~/.cache/gleamx/embeddings; 'off': none)")


@dataclass(kw_only=True)
class GallerySearch:
    """How a command searches the gallery (:mod:`gleamx.retrieval.index`): exact, or a faiss index past a size; one
    set of options shared by ``retrieval eval`` and ``localize``."""

    # how the gallery is searched (gleamx.retrieval.index): exact, or a faiss index past a size
    index: IndexKind = index_option("index")
    index_threshold: int = index_option("index_threshold")
    nlist: int | None = index_option("nlist")
    nprobe: int = index_option("nprobe")
    pq_m: int = index_option("pq_m")
    pq_nbits: int = index_option("pq_nbits")
    pq_rerank: int = index_option("pq_rerank")
    hnsw_m: int = index_option("hnsw_m")
    ef_construction: int = index_option("ef_construction")
    ef_search: int = index_option("ef_search")

    def index_options(self) -> IndexOptions:
        """How the gallery is searched (checked)."""
        return IndexOptions.of(self)


@dataclass(kw_only=True)
class RetrievalEvalConfig(GallerySearch):
    """R@k, R@1%, mAP of an encoder on a split, overall and per view."""

    encoder: str = field(metadata={"help": "a trained retrieval encoder dir or Hub id ('tiny': untrained tiny)"})
    data: str = field(metadata={"help": _DATA_HELP})
    output: str = field(metadata={"help": "directory for retrieval_results.json"})
    split: str = field(default="test", metadata={"help": "split to score"})
    views: list[str] | None = field(default=None, metadata={"help": _VIEWS_HELP})
    ks: list[int] | None = field(default=None, metadata=field_help(
        "R@k cutoffs, e.g. 1,5,10 (the default; a k >= the gallery size is then reported as null with a note, and "
        "is an error when named here)", low=1, high=COUNT_MAX))
    batch_size: int = field(default=64, metadata=field_help("images per embedding batch", low=1, high=BATCH_MAX))
    img_size: int = field(default=64, metadata=field_help("input size of the untrained 'tiny' encoder", low=1,
                                                          high=SIDE_MAX))
    num_workers: int = field(default=4, metadata=field_help("DataLoader workers that decode images", low=0,
                                                            high=WORKERS_MAX))
    embedding_cache: str | None = field(default=None, metadata={"help": _CACHE_HELP})

    def __post_init__(self) -> None:
        for flag, value in (("--encoder", self.encoder), ("--data", self.data), ("--output", self.output)):
            check_given(flag, value, "required")
        self.views = comma_list(self.views)
        self.ks = _int_list("--ks", self.ks)
        check_int("--batch-size", self.batch_size, 1)
        check_int("--img-size", self.img_size, 1)
        check_int("--num-workers", self.num_workers, 0)
        self.index_options()
        check_ranges(self)


@dataclass(kw_only=True)
class LocalizeConfig(GallerySearch):
    """the retrieval encoder's top-k candidates, verified and explained by the MLLM, reranked."""

    encoder: str = field(metadata={"help": "trained retrieval encoder dir or Hub id"})
    model: str = field(metadata={"help": "MLLM dir or Hub id (e.g. Qwen/Qwen2.5-VL-3B-Instruct)"})
    data: str = field(metadata={"help": _DATA_HELP})
    output: str = field(metadata={"help": "directory for localize_results.json, ranked.jsonl and verify/"})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter dir from recipes/sft.py"})
    split: str = field(default="test", metadata={"help": "split whose queries are localized"})
    k: int | None = field(default=None, metadata=field_help(
        "candidates per query (default 5, or every tile of a smaller gallery; a --k above the gallery size is an "
        "error)", low=1, high=CANDIDATES_MAX))
    lang: Lang = field(default="en", metadata={"help": "language of the MLLM's prompts and answers"})
    task: Task = field(default="label", metadata={"help": "explain: the MLLM explains each pair"})
    views: list[str] | None = field(default=None, metadata={"help": _VIEWS_HELP})
    limit: int | None = field(default=None, metadata=field_help("only the first N queries", low=1, high=COUNT_MAX))
    batch_size: int = field(default=8, metadata=field_help("pairs per MLLM batch", low=1, high=BATCH_MAX))
    max_new_tokens: int | None = field(default=None, metadata=field_help("default 16 (label) or 256 (explain)",
                                                                         low=1, high=TOKENS_MAX))
    repetition_penalty: float = field(default=1.0, metadata=field_help(
        "greedy decoding's repetition penalty (1.0: none)", low=0, high=10))
    dtype: Dtype = field(default="auto", metadata={"help": "the MLLM's weights' dtype"})
    min_pixels: int | None = pixel_floor_option()
    max_pixels: int | None = pixel_budget_option()
    overwrite: bool = field(default=False, metadata={"help": "discard verifications made with another config"})
    embedding_cache: str | None = field(default=None, metadata={"help": _CACHE_HELP})

    def __post_init__(self) -> None:
        for flag, value in (("--encoder", self.encoder), ("--model", self.model), ("--data", self.data),
                            ("--output", self.output)):
            check_given(flag, value, "required")
        self.views = comma_list(self.views)
        check_choice("--lang", self.lang, LANGS)
        check_choice("--task", self.task, TASKS)
        check_choice("--dtype", self.dtype, DTYPES)
        for flag, value in (("--k", self.k), ("--limit", self.limit), ("--max-new-tokens", self.max_new_tokens)):
            check_int(flag, value, 1, optional=True)
        check_pixel_budget("--min-pixels", self.min_pixels, "--max-pixels", self.max_pixels)
        check_int("--batch-size", self.batch_size, 1)
        check_positive("--repetition-penalty", self.repetition_penalty, what="a positive number (1.0: none)")
        self.index_options()
        check_ranges(self)

    @property
    def candidates(self) -> int:
        """Candidates per query asked for (``k``, default 5)."""
        return self.k or 5
