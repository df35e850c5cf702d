"""Random-initialised tiny Qwen-VL models of the real ``transformers`` classes, for CPU tests.

Every ``nn.Linear`` of the language model and of the vision tower has in/out widths that are
multiples of 64 (and >= 64): bitsandbytes quantises in blocks of 64, so 4-bit (QLoRA) tests can
run on these models. The processor's default image budget is small (<= 224*224 pixels, i.e. at
most 64 image tokens) so a few hundred CPU training steps take minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gleamx.checks import check_pixel_budget
from gleamx.errors import GleamModelError
from gleamx.models.chat_template import QWEN_VL_CHAT_TEMPLATE
from gleamx.models.tokenizer import QWEN_MODEL_VOCAB_SIZE, SPECIAL_TOKENS, build_tokenizer

from gleamx.choices import ARCHS  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from gleamx.models.config import TinyModelConfig

# arch -> transformers class names: config, model, processor, image processor, video processor.
_CLASSES: dict[str, tuple[str, str, str, str, str]] = {
    "qwen2_vl": (
        "Qwen2VLConfig",
        "Qwen2VLForConditionalGeneration",
        "Qwen2VLProcessor",
        "Qwen2VLImageProcessor",
        "Qwen2VLVideoProcessor",
    ),
    "qwen2_5_vl": (
        "Qwen2_5_VLConfig",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2_5_VLProcessor",
        "Qwen2VLImageProcessor",
        "Qwen2VLVideoProcessor",
    ),
    "qwen3_vl": (
        "Qwen3VLConfig",
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLProcessor",
        "Qwen2VLImageProcessor",
        "Qwen3VLVideoProcessor",
    ),
}

# Tiny sizes. Text: head_dim 32 so the 2 kv heads give k/v projections 64 wide.
TEXT_HIDDEN = 128
TEXT_INTERMEDIATE = 256
TEXT_LAYERS = 2
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS  # 32
VISION_HIDDEN = 64
VISION_INTERMEDIATE = 128
VISION_DEPTH = 2
VISION_HEADS = 2  # vision head_dim 32: the 2-D axial rope needs head_dim % 4 == 0
SPATIAL_MERGE = 2
TEMPORAL_PATCH = 2
# mrope splits head_dim/2 = 16 rotary frequencies over (t, h, w), in the real models' proportions:
# Qwen2/2.5-VL use [16, 24, 24] of 64, Qwen3-VL [24, 20, 20] of 64 (interleaved).
MROPE_SECTION_QWEN2 = [4, 6, 6]
MROPE_SECTION_QWEN3 = [6, 5, 5]


def _patch_size(arch: str) -> int:
    return 16 if arch == "qwen3_vl" else 14


def default_pixels(arch: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a tiny model: 4 to 64 image tokens (2x2 to 8x8 merged patches)."""
    factor = _patch_size(arch) * SPATIAL_MERGE
    return (2 * factor) ** 2, 224 * 224


def _transformers_attr(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def available_archs() -> tuple[str, ...]:
    """The archs of :data:`ARCHS` whose classes the installed transformers provides."""
    out = []
    for arch in ARCHS:
        try:
            for name in _CLASSES[arch]:
                _transformers_attr(name)
        except (AttributeError, ImportError):
            continue
        out.append(arch)
    return tuple(out)


def _require_arch(arch: str) -> tuple[Any, ...]:
    if arch not in _CLASSES:
        raise GleamModelError(f"tiny model: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    try:
        return tuple(_transformers_attr(name) for name in _CLASSES[arch])
    except (AttributeError, ImportError) as e:
        import transformers

        raise GleamModelError(
            f"tiny model: arch {arch!r} needs transformers classes {', '.join(_CLASSES[arch])}, "
            f"not all available in transformers {transformers.__version__} ({e})"
        ) from e


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _tiny_text_config(arch: str, vocab_size: int, pad: int, im_end: int) -> dict[str, Any]:
    """The language model's part of a tiny config (sizes shrunk; rope and ids as the real family)."""
    text: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": TEXT_INTERMEDIATE,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "bos_token_id": pad,  # Qwen never prepends a BOS; its configs name <|endoftext|>
        "eos_token_id": im_end,
        "pad_token_id": pad,
    }
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": MROPE_SECTION_QWEN2}
        text["max_window_layers"] = TEXT_LAYERS
    else:
        text["head_dim"] = HEAD_DIM
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": MROPE_SECTION_QWEN3,
            "mrope_interleaved": True,
        }
    return text


def _tiny_vision_config(arch: str) -> dict[str, Any]:
    """The vision tower's part of a tiny config (each family names its widths differently)."""
    if arch == "qwen2_vl":
        vision: dict[str, Any] = {
            "depth": VISION_DEPTH,
            "embed_dim": VISION_HIDDEN,
            "hidden_size": TEXT_HIDDEN,  # Qwen2-VL's name for the merger's output width
            "mlp_ratio": VISION_INTERMEDIATE // VISION_HIDDEN,
            "num_heads": VISION_HEADS,
        }
    else:  # Qwen2.5-VL and Qwen3-VL name the widths alike
        vision = {
            "depth": VISION_DEPTH,
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": VISION_INTERMEDIATE,
            "num_heads": VISION_HEADS,
            "out_hidden_size": TEXT_HIDDEN,
        }
        if arch == "qwen2_5_vl":
            vision.update({
                "window_size": 112,  # 112 px = 4x4 merged patches per attention window, as in the real model
                "fullatt_block_indexes": [VISION_DEPTH - 1],
                "tokens_per_second": 2,
            })
        else:
            vision.update({
                "num_position_embeddings": 24 * 24,  # learned grid (square), interpolated to the image grid
                "deepstack_visual_indexes": [0],  # one deepstack merger, fed to the first text layer
            })
    vision.update(
        {
            "patch_size": _patch_size(arch),
            "temporal_patch_size": TEMPORAL_PATCH,
            "spatial_merge_size": SPATIAL_MERGE,
            "in_channels": 3,
        }
    )
    return vision


def tiny_config(arch: str, ids: dict[str, int], vocab_size: int, tie_word_embeddings: bool) -> Any:
    """The tiny config for ``arch`` with the special-token ids ``ids`` (keys: token strings)."""
    config_cls = _require_arch(arch)[0]
    text = _tiny_text_config(arch, vocab_size, ids["<|endoftext|>"], ids["<|im_end|>"])
    vision = _tiny_vision_config(arch)
    return config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )


def tiny_processor(arch: str, tokenizer: Any, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """The processor for ``arch`` around ``tokenizer``, with a small image/video pixel budget."""
    _, _, processor_cls, image_cls, video_cls = _require_arch(arch)
    lo, hi = default_pixels(arch)
    lo = lo if min_pixels is None else int(min_pixels)
    hi = hi if max_pixels is None else int(max_pixels)
    check_pixel_budget("tiny model: min_pixels", lo, "max_pixels", hi)
    patch = _patch_size(arch)
    # Qwen2-VL normalises with CLIP statistics, Qwen3-VL with 0.5/0.5 (the real checkpoints' values).
    stats: dict[str, Any] = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if arch == "qwen3_vl" else {}
    common: dict[str, Any] = {
        "size": {"shortest_edge": lo, "longest_edge": hi},
        "patch_size": patch,
        "temporal_patch_size": TEMPORAL_PATCH,
        "merge_size": SPATIAL_MERGE,
        **stats,
    }
    image_processor = image_cls(**common)
    video_processor = video_cls(**common, cap_pixels_per_frame=True)
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    tokenizer: str = "bpe",
    seed: int = 0,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    tie_word_embeddings: bool | None = None,
) -> Path:
    """Build and save a random-initialised tiny ``arch`` model with its tokenizer and processor.

    ``tokenizer`` is ``"bpe"`` (small bilingual vocabulary, a few M parameters in all) or ``"qwen"``
    (the real 151,643-token vocabulary, model vocab 151,936). ``tie_word_embeddings`` defaults to
    True for ``"qwen"`` (halves its ~39M embedding parameters) and False for ``"bpe"``. Weights are
    a pure function of ``arch``, ``tokenizer`` and ``seed``. Returns ``out_dir``, which then loads
    offline with ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``.
    """
    import torch
    from transformers import GenerationConfig

    model_cls = _require_arch(arch)[1]
    tok = build_tokenizer(tokenizer)
    tok.chat_template = QWEN_VL_CHAT_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # Pad the embedding rows to a multiple of 64: lm_head is a Linear and must stay 4-bit friendly.
    vocab_size = QWEN_MODEL_VOCAB_SIZE if tokenizer == "qwen" else _round_up(len(tok), 64)
    tie = (tokenizer == "qwen") if tie_word_embeddings is None else bool(tie_word_embeddings)
    config = tiny_config(arch, ids, vocab_size, tie)

    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's RNG state alone
        torch.manual_seed(seed)
        model = model_cls(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    processor = tiny_processor(arch, tok, min_pixels, max_pixels)

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        processor.save_pretrained(out)
    except OSError as e:
        raise GleamModelError(f"tiny model: could not write to {out} ({e})") from e
    return out


@dataclass
class TinyModel:
    """What :func:`build_tiny` saved: where, which class, and from what."""

    out: Path
    arch: str
    tokenizer: str  # "bpe" or "qwen"
    real_checkpoint: str | None = None  # built from this Hub checkpoint's own files (``--from-real``)
    full_size: bool = False

    def summary_lines(self) -> list[str]:
        if self.real_checkpoint is None:
            return [f"tiny {self.arch} model ({self.tokenizer} tokenizer) saved to {self.out}"]
        size = "full-size" if self.full_size else "tiny"
        return [f"{size} random {self.arch} model from {self.real_checkpoint}'s own files saved to {self.out}"]


def build_tiny(cfg: TinyModelConfig) -> TinyModel:
    """``gleamx models tiny``: :func:`build_tiny_model`, or with ``from_real``/``full_size``
    :func:`~gleamx.models.real_tiny.build_real_tiny_model`. ``cfg.out`` follows :mod:`gleamx.outputs` (a model
    folder of its own)."""
    from gleamx.outputs import claim_folder

    folder = claim_folder(cfg.out, "--out", command="models tiny", overwrite=cfg.overwrite, exclusive=True,
                          identity={k: getattr(cfg, k) for k in ("arch", "tokenizer", "seed", "from_real", "full_size")})
    if cfg.from_real or cfg.full_size:
        from gleamx.models.real_tiny import REAL_CHECKPOINTS, build_real_tiny_model

        out = build_real_tiny_model(cfg.arch, cfg.out, seed=cfg.seed, full_size=cfg.full_size)
        folder.done()
        return TinyModel(out, cfg.arch, "qwen", REAL_CHECKPOINTS[cfg.arch][1], cfg.full_size)
    out = build_tiny_model(cfg.arch, cfg.out, tokenizer=cfg.tokenizer, seed=cfg.seed)
    folder.done()
    return TinyModel(out, cfg.arch, cfg.tokenizer)


def linear_widths(model: Any) -> dict[str, tuple[int, int]]:
    """``{module name: (in_features, out_features)}`` of every ``nn.Linear`` in ``model``."""
    import torch

    return {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


__all__ = [
    "ARCHS",
    "TinyModel",
    "available_archs",
    "build_tiny",
    "build_tiny_model",
    "default_pixels",
    "linear_widths",
    "tiny_config",
    "tiny_processor",
]
