"""Sample -> chat messages: fixed image order, both languages, label and explain variants."""

import pytest

from gleamx.data import load_samples
from gleamx.prompts import build_answer, build_messages, sample_images, sample_languages
from gleamx.task import IMAGE_ORDER, USER_TEMPLATES, parse_verdict, user_prompt, verdict_line
from gleamx.task.templates import view_from_prompt


@pytest.fixture
def samples(data_small_jsonl):
    return {s.id: s for s in load_samples(data_small_jsonl).samples}


def test_image_order_is_query_then_satellite(samples):
    s = samples["a"]
    msgs = build_messages(s, "en", inline_images=True)
    images = [p["image"] for p in msgs[0]["content"] if p["type"] == "image"]
    assert IMAGE_ORDER == ("query_image", "satellite_image")
    assert images == [s.query_image, s.satellite_image]
    assert msgs[0]["content"][-1]["type"] == "text"  # the instruction follows the two images
    pil = sample_images(s)
    assert [im.getpixel((0, 0)) for im in pil] == [(200, 30, 30), (30, 200, 30)] and pil[0].mode == "RGB"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_explain_answer_ends_in_exactly_one_verdict(samples, lang):
    for sid in ("a", "b"):
        s = samples[sid]
        answer = build_answer(s, lang, "explain")
        assert answer.splitlines()[-1] == verdict_line(s.label, lang)
        assert parse_verdict(answer) is s.label
        assert answer.count(verdict_line(s.label, lang)) == 1


def test_explanation_without_verdict_gets_one_appended(samples):
    assert build_answer(samples["c"], "en") == "Same grey blocks.\nAnswer: Yes"


def test_label_variant_is_the_verdict_line_only(samples):
    assert build_answer(samples["b"], "zh", "label") == "结论：否"
    msgs = build_messages(samples["b"], "en", "label")
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": "Answer: No"}]}


def test_messages_without_answer_for_generation(samples):
    msgs = build_messages(samples["a"], "zh", with_answer=False)
    assert [m["role"] for m in msgs] == ["user"]
    assert msgs[0]["content"][:2] == [{"type": "image"}, {"type": "image"}]
    assert "无人机航拍" in msgs[0]["content"][2]["text"] and "结论：是" in msgs[0]["content"][2]["text"]


def test_missing_explanation_for_explain_task_is_a_clear_error(samples):
    with pytest.raises(ValueError, match="explanation.zh: missing"):
        build_answer(samples["c"], "zh", "explain")


def test_languages_per_sample(samples):
    assert sample_languages(samples["a"], "both", "explain") == ["en", "zh"]
    assert sample_languages(samples["c"], "both", "explain") == ["en"]
    assert sample_languages(samples["d"], "both", "label") == ["en", "zh"]
    assert sample_languages(samples["d"], "zh", "explain") == []


@pytest.mark.parametrize("key", sorted(USER_TEMPLATES))
def test_templates_name_both_verdict_lines_and_the_view(key):
    lang, task = key
    for view in ("uav", "street_map", "panorama", "ground"):
        text = user_prompt(view, lang, task)
        assert verdict_line(True, lang) in text and verdict_line(False, lang) in text
        assert view_from_prompt(text) == view


def test_unknown_view_or_language():
    with pytest.raises(ValueError, match="query_view"):
        user_prompt("drone", "en")
    with pytest.raises(ValueError, match="lang"):
        user_prompt("uav", "fr")
