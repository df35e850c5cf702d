"""GLEAM-X from real data, end to end on fixtures: a University-1652 tree (tests/test_cvgl.py's, with the real
folder and file naming) -> ``gleamx data cvgl`` -> ``data pairs`` -> ``annotate`` (a loopback OpenAI-compatible
stub) -> ``review import`` -> ``sft`` (the tiny model, 2 steps) -> ``eval`` -> ``data push --dry-run``, each stage
through the command line, as README's "From real data, end to end" recipe runs it on the real download."""

from __future__ import annotations

import json
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import openai  # noqa: E402,F401  dev dependency: a missing one fails, never skips

from gleamx.curate.annotate import COST_NAME, FLAGGED_NAME, PROMPTS  # noqa: E402
from gleamx.cli.main import main  # noqa: E402
from gleamx.data import load_samples  # noqa: E402
from test_cvgl import _img, university  # noqa: E402, F401  (the fixture tree)
from test_judge import loopback_servers, send  # noqa: E402  (tests/test_judge.py's loopback server)

ENV = "GLEAMX_TEST_E2E_KEY"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _stub(h: BaseHTTPRequestHandler) -> None:
    """An MLLM that reads the label the prompt states (``--label given``) and explains it in that language."""
    body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
    text = next(m for m in body["messages"] if m["role"] == "user")["content"][-1]["text"]
    lang = "zh" if "图1" in text else "en"
    yes = PROMPTS[lang]["label_given"][True] in text
    content = (f"图1与图2的道路{'一致' if yes else '不同'}。\n结论：{'是' if yes else '否'}" if lang == "zh" else
               f"The roads in image 1 and image 2 {'agree' if yes else 'differ'}.\nAnswer: {'Yes' if yes else 'No'}")
    send(h, 200, {}, json.dumps({
        "id": "chatcmpl-e2e", "object": "chat.completion", "created": 0, "model": "stub-mllm",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}).encode())


@pytest.mark.slow
def test_university1652_to_trained_and_evaluated_gleamx(university, models_tiny_dir, tmp_path: Path,  # noqa: F811
                                                        monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV, "sk-e2e-not-a-real-key")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for i in range(4, 9):  # 8 test locations in all, so each split of the re-split has more than one
        loc = f"{i:04d}"
        _img(university / "test" / "gallery_satellite" / loc / f"{loc}.jpg", (i * 25, 60, 0))
        for k in range(3):
            _img(university / "test" / "query_drone" / loc / f"image-{k:02d}.jpeg", (0, i * 25, 60 + k))
        _img(university / "test" / "query_street" / loc / "s1.jpg", (60, 0, i * 25))

    # 1. the retrieval layout, pointing at the tree left in place
    layout = tmp_path / "u1652-test"
    assert main(["data", "cvgl", str(university), "--layout", "university1652", "--split", "test",
                 "--no-distractors", "--out", str(layout)]) == 0
    assert (layout / "retrieval" / "gallery.jsonl").is_file() and (layout / "retrieval" / "queries.jsonl").is_file()

    # 2. label-only pairs, the locations re-split 4/2/2
    pairs = tmp_path / "pairs"
    assert main(["data", "pairs", "--retrieval", str(layout), "--out", str(pairs), "--split-fractions",
                 "0.5,0.25,0.25", "--max-per-view", "2", "--neg-ratio", "1", "--seed", "0"]) == 0
    n_pairs = {s: len(_rows(pairs / f"{s}.jsonl")) for s in ("train", "val", "test")}
    assert n_pairs == {"train": 8, "val": 8, "test": 8} and (pairs / "README.md").is_file()

    # 3. explanations in both languages from the stub endpoint
    ann = tmp_path / "annotated"
    with loopback_servers() as serve:
        url = serve(_stub)
        assert main(["annotate", "--data", str(pairs), "--model", "stub-mllm", "--base-url", url, "--out", str(ann),
                     "--api-key-env", ENV, "--lang", "en,zh", "--concurrency", "4", "--timeout", "10",
                     "--price-in", "2.5", "--price-out", "10"]) == 0
    annotated = _rows(ann / "annotated.jsonl")
    assert len(annotated) == 24 and _rows(ann / FLAGGED_NAME) == []
    assert all(set(r["explanation"]) == {"en", "zh"} for r in annotated)
    assert json.loads((ann / COST_NAME).read_text())["models"][0]["requests"] == 48

    # 4. human revision of the test split: 5 accepted, 1 edited, 1 rejected, 1 never reviewed (left out)
    test = [r for r in annotated if r["split"] == "test"]
    edited = dict(test[5]["explanation"], en="Edited by a person: " + test[5]["explanation"]["en"])
    revisions = tmp_path / "revisions.jsonl"
    revisions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        *({"id": r["id"], "decision": "accept"} for r in test[:5]),
        {"id": test[5]["id"], "decision": "edit", "explanation": edited},
        {"id": test[6]["id"], "decision": "reject"}]), encoding="utf-8")
    reviewed = tmp_path / "reviewed"
    # the annotation directory itself is the data: its run records sit in a subfolder no reader looks into
    assert load_samples(ann).n_bad == 0 and len(load_samples(ann).dataset) == 24
    assert main(["review", "import", "--data", str(ann), "--split", "test", "--revisions",
                 str(revisions), "--out", str(reviewed)]) == 0
    stats = json.loads((reviewed / "review_stats.json").read_text())
    assert (stats["n_accepted"], stats["n_edited"], stats["n_rejected"], stats["n_written"]) == (5, 1, 1, 6)
    kept = _rows(reviewed / "test.jsonl")
    assert Counter(r["meta"]["review_decision"] for r in kept) == {"accept": 5, "edit": 1}
    assert len(_rows(reviewed / "train.jsonl")) == 8 and len(_rows(reviewed / "val.jsonl")) == 8
    assert main(["data", "validate", str(reviewed)]) == 0

    # 5. two LoRA steps of the tiny model on the reviewed data
    model = models_tiny_dir("qwen2_5_vl")
    run = tmp_path / "run"
    assert main(["sft", "--config", "tiny/sft_lora", "--model_name_or_path", str(model), "--dataset_name",
                 str(reviewed), "--output_dir", str(run), "--max_steps", "2", "--per_device_train_batch_size", "2",
                 "--logging_steps", "1", "--save_steps", "1000", "--use_cpu", "true"]) == 0
    assert (run / "adapter_model.safetensors").is_file() and (run / "README.md").is_file()

    # 6. the verdicts of the trained model on the reviewed test split
    ev = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--adapter", str(run), "--data", str(reviewed), "--split", "test",
                 "--task", "label", "--max-new-tokens", "4", "--bootstrap", "0", "--output", str(ev)]) == 0
    results = json.loads((ev / "results.json").read_text())
    assert results["n"] == len(kept) == 6
    assert (ev / "report.html").is_file()

    # 7. localize the reviewed test split's queries among its own satellite tiles, with the trained adapter
    loc = tmp_path / "localize"
    assert main(["localize", "--encoder", "tiny", "--model", str(model), "--adapter", str(run), "--data",
                 str(reviewed), "--split", "test", "--k", "2", "--max-new-tokens", "4", "--output", str(loc)]) == 0
    summary = json.loads((loc / "localize_results.json").read_text())
    positives = [r for r in kept if r["label"]]
    assert summary["n_query"] == len({r["meta"]["query_id"] for r in positives})
    assert summary["n_gallery"] == len({r["meta"]["satellite_location_id"] for r in kept})
    assert summary["k"] == 2 and summary["R@1_verified"] is not None

    # 8. what would go to the Hub
    capsys.readouterr()
    preview = tmp_path / "hub_preview"
    assert main(["data", "push", str(reviewed), "--repo-id", "me/gleamx-u1652", "--annotations", str(ann),
                 "--preview-dir", str(preview), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload 4 file(s) to dataset me/gleamx-u1652 (public; train=8, val=8, test=6)" in out
    card = (preview / "README.md").read_text(encoding="utf-8")
    assert "| university1652 | 22 |" in card and "| stub-mllm | 22 |" in card  # sources; annotator per sample
    assert "| stub-mllm | 48 | 4800 | 960 | 0.02 |" in card  # cost.json of the annotation run
    assert "5 accepted, 1 edited, 1 rejected" in card
