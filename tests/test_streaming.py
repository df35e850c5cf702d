"""Training from a stream: Parquet shards read as a ``datasets.IterableDataset`` (a local stand-in of a Hub dataset),
the same losses as the materialised run on the same sample order, an exact resume mid-stream, each process reading
its own shards, and bad streams refused in one line."""

from __future__ import annotations

import itertools
import json
import shutil
from functools import partial
from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError, GleamDataError
from hub_shards import N_SHARDS, write_parquet_shards
from training_checks import assert_moved, straight_and_resumed, tensors

ROOT = Path(__file__).resolve().parents[1]
SFT_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


@pytest.fixture(scope="module")
def hub(synth_dir, models_tiny_dir, tmp_path_factory):
    data = synth_dir(48, seed=3)
    return {"data": data, "model": models_tiny_dir("qwen2_5_vl"),
            "shards": write_parquet_shards(data, tmp_path_factory.mktemp("hub") / "repo")}


def _sft(hub, out: Path, *overrides: str) -> Path:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.sft import run_sft

    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    args = parse_recipe(parser, ["--config", str(SFT_RECIPE), "--model_name_or_path", str(hub["model"]),
                                 "--dataset_name", str(hub["shards"]), "--output_dir", str(out), "--logging_steps", "1",
                                 "--per_device_train_batch_size", "2", "--save_steps", "1000", "--lang", "en",
                                 *overrides])
    return run_sft(*args)


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


def test_the_stream_reads_every_shard_in_order_and_checks_each_record(hub):
    from gleamx.data import load_samples
    from gleamx.data.stream import stream_samples

    stream = stream_samples(hub["shards"], split="train")
    assert stream.n_shards == N_SHARDS
    streamed = list(stream.dataset)
    loaded = load_samples(hub["data"], split="train").dataset
    assert [r["id"] for r in streamed] == loaded["id"]
    assert [r["label"] for r in streamed] == loaded["label"]
    assert streamed[0]["query_image"].size == loaded[0]["query_image"].size  # decoded as the materialised rows


@pytest.mark.slow
def test_streamed_sft_has_the_losses_of_the_materialised_run_on_the_same_order(hub, tmp_path):
    """No shuffle on either side: the materialised run reads the same shards in order (sequential sampler)."""
    steps = ("--max_steps", "4")
    materialised = _sft(hub, tmp_path / "m", *steps, "--train_sampling_strategy", "sequential")
    streamed = _sft(hub, tmp_path / "s", *steps, "--dataset_streaming", "true", "--stream_shuffle_buffer", "0")
    a, b = _losses(materialised), _losses(streamed)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    assert len(set(a.values())) > 1  # different batches, not one batch seen four times
    card = (streamed / "README.md").read_text()
    assert "8 streamed training conversations" in card


@pytest.mark.slow
def test_a_resumed_stream_reads_on_where_it_stopped(hub, tmp_path):
    """Shuffled stream, killed at step 3 (its checkpoint copied), resumed: steps 4-6 see the batches of the straight
    run. Had the resume started the stream again (or skipped too few or too many rows), the losses would differ."""
    common = ("--max_steps", "6", "--save_steps", "3", "--dataset_streaming", "true", "--stream_shuffle_buffer", "8")
    straight, resumed = straight_and_resumed(partial(_sft, hub), tmp_path, 3, *common)
    a, b = _losses(straight), _losses(resumed)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    at3 = tensors(resumed / "checkpoint-3" / "adapter_model.safetensors")
    assert_moved(at3, tensors(resumed / "adapter_model.safetensors"), "resumed run after checkpoint-3")


@pytest.mark.parametrize("n_shards", [4, 3])
def test_each_process_reads_its_own_part_of_the_stream(hub, tmp_path, n_shards):
    """The Trainer's loader under accelerate with 2 processes and batches not dispatched (what a streamed run sets):
    4 shards, each process reads two of them; 3 shards, each reads all and keeps its part of every batch. Either
    way the processes' rows are disjoint and together the whole stream."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    from gleamx.data.stream import stream_samples

    shards = write_parquet_shards(hub["data"], tmp_path / "repo", n_shards=n_shards)
    ds = stream_samples(shards, split="train").dataset
    seen = []
    for rank in range(2):
        loader = prepare_data_loader(DataLoader(ds, batch_size=2, collate_fn=lambda rows: [r["id"] for r in rows]),
                                     num_processes=2, process_index=rank, dispatch_batches=False, put_on_device=False)
        seen.append([i for batch in loader for i in batch])
    everything = [r["id"] for r in ds]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(everything)[:len(seen[0]) + len(seen[1])]
    assert len(seen[0] + seen[1]) >= len(everything) - 2  # at most a last partial batch left over


def test_skipping_taken_rows_under_sharding_is_per_process():
    """skip_taken(n x world) before the loader shards the stream: each process skips exactly its own n rows, in the
    shuffled, endless order training reads. (A generated 4-shard stream: a Parquet reader dropped mid-pass makes
    datasets pause 5 s, apache/arrow#45214, and what is tested here does not depend on the source.)"""
    import datasets

    from gleamx.data.stream import skip_taken, training_stream

    def rows(shards: list[int]):
        for shard in shards:
            for i in range(10):
                yield {"id": f"{shard}-{i}"}

    source = datasets.IterableDataset.from_generator(rows, gen_kwargs={"shards": [0, 1, 2, 3]},
                                                     features=datasets.Features({"id": datasets.Value("string")}))
    stream = training_stream(source, seed=1, buffer_size=4)
    for rank in range(2):
        full = [r["id"] for r in itertools.islice(stream.shard(num_shards=2, index=rank), 30)]
        assert len(set(full)) == 20  # this rank's two shards, read past the end of a pass
        skipped = skip_taken(stream, global_step=3, total_batch_size=2 * 2)  # 3 steps x 2 rows x 2 processes
        assert [r["id"] for r in itertools.islice(skipped.shard(num_shards=2, index=rank), 24)] == full[6:30]


@pytest.mark.slow
def test_a_stream_needs_max_steps_and_something_to_train_on(hub, tmp_path):
    with pytest.raises(GleamConfigError, match=r"^recipe: max_steps: a streamed dataset has no length"):
        _sft(hub, tmp_path / "a", "--dataset_streaming", "true", "--max_steps", "-1", "--num_train_epochs", "1")
    with pytest.raises(GleamDataError, match=r"no split 'val' \(the dataset has: train\)"):
        _sft(hub, tmp_path / "b", "--dataset_streaming", "true", "--max_steps", "2", "--dataset_train_split", "val")
    # nothing to train on (no explanation for task explain): one line before the model loads, not an endless
    # stream of nothing
    rows = [json.loads(line) for line in (hub["data"] / "train.jsonl").read_text().splitlines()[:4]]
    (tmp_path / "label_only").mkdir()
    for r in rows:
        r.pop("explanation", None)
        for col in ("query_image", "satellite_image"):
            shutil.copy(hub["data"] / r[col], tmp_path / "label_only" / Path(r[col]).name)
            r[col] = Path(r[col]).name
    (tmp_path / "label_only" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(GleamDataError, match=r"the stream has no sample to train on \(split 'train', lang 'en', "
                                             r"task 'explain'\)") as e:
        _sft({**hub, "shards": tmp_path / "label_only"}, tmp_path / "c", "--dataset_streaming", "true",
             "--max_steps", "2", "--task", "explain")
    assert "\n" not in str(e.value)



def test_a_bad_record_in_a_stream_is_one_line_naming_it(hub, tmp_path):
    import datasets

    rows = [json.loads(line) for line in (hub["data"] / "train.jsonl").read_text().splitlines()[:4]]
    for r in rows:
        for col in ("query_image", "satellite_image"):
            r[col] = str(hub["data"] / r[col])
    for i, r in enumerate(rows):
        r["label"] = "perhaps" if i == 2 else ("yes" if r["label"] else "no")
    repo = tmp_path / "bad" / "data"
    repo.mkdir(parents=True)
    datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "meta"}
                                for r in rows]).to_parquet(str(repo / "train-00000-of-00001.parquet"))
    from gleamx.data.stream import stream_samples

    stream = stream_samples(repo.parent, split="train", allow_outside_paths=True)
    with pytest.raises(GleamDataError, match=r"bad:3: label: ") as e:
        list(stream.dataset)
    assert "\n" not in str(e.value)
    kept = stream_samples(repo.parent, split="train", allow_outside_paths=True, skip_bad=True)
    assert len(list(kept.dataset)) == 3 and len(kept.checker.problems) == 1


@pytest.fixture(scope="module")
def two_sources(hub, synth_dir, tmp_path_factory):
    other = synth_dir(48, seed=4)
    return hub["data"], other, write_parquet_shards(other, tmp_path_factory.mktemp("hub2") / "repo")


@pytest.mark.parametrize("streamed", [False, True])
def test_a_mixture_draws_each_source_in_proportion_to_its_weight(two_sources, streamed):
    from gleamx.data import load_samples
    from gleamx.data.mixture import mix, parse_mixture
    from gleamx.data.stream import stream_samples

    a, b, b_shards = two_sources
    sources = parse_mixture([{"path": str(a), "weight": 3}, {"path": str(b_shards), "weight": 1}])
    read = (lambda p: stream_samples(p, split="train").dataset) if streamed else (
        lambda p: load_samples(p, split="train").dataset)
    rows = list(mix([read(s.path) for s in sources], sources, seed=0, stopping="all_exhausted"))
    ids = [r["id"] for r in rows]
    from_b = sum(i.startswith("synth-s4") for i in ids)
    n_a = len(load_samples(a, split="train").dataset)
    # all_exhausted: every row of both sources, b's (the smaller share) drawn again while a is read
    assert {i for i in ids if i.startswith("synth-s3")} == set(load_samples(a, split="train").dataset["id"])
    assert 0.15 < from_b / len(ids) < 0.35, (from_b, len(ids))
    assert len(ids) >= n_a
    first = list(mix([read(s.path) for s in sources], sources, seed=0, stopping="first_exhausted"))
    assert len(first) < len(ids)


def test_bad_mixtures_are_one_line():
    from gleamx.data.mixture import parse_mixture

    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[1\]\.weight: expected a number > 0, got -1$"):
        parse_mixture([{"path": "a"}, {"path": "b", "weight": -1}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[0\]: unknown key\(s\) wieght"):
        parse_mixture([{"path": "a", "wieght": 2}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[0\]\.path: expected a file"):
        parse_mixture([{"weight": 2}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture: expected a list"):
        parse_mixture("a,b")
    # each entry's own fields, named where they stand (a split of 3 was a traceback, columns: 5 trained silently)
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[0\]\.split: expected a split name"):
        parse_mixture([{"path": "a", "split": 3}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[1\]\.format: expected one of auto, "):
        parse_mixture([{"path": "a"}, {"path": "b", "format": "csv"}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[0\]\.columns: expected "):
        parse_mixture([{"path": "a", "columns": 5}])
    with pytest.raises(GleamConfigError, match=r"^recipe: dataset_mixture\[0\]\.columns: expected "):
        parse_mixture([{"path": "a", "columns": {"label": 1}}])


@pytest.mark.parametrize("streamed", [False, True], ids=["materialised", "streamed"])
def test_a_column_mapping_for_data_that_is_not_hf_is_refused(two_sources, streamed):
    """A mapping applies to Hugging Face datasets only: given for a gleamx folder it would do nothing, silently."""
    from gleamx.data import load_samples
    from gleamx.data.stream import stream_samples

    folder = two_sources[1]
    with pytest.raises(GleamConfigError, match=r"^columns: .* is jsonl data, .*applies to a Hugging Face dataset"):
        (stream_samples if streamed else load_samples)(folder, columns="label=match")


def test_the_next_command_of_a_mixture_run_evaluates_its_first_source():
    from types import SimpleNamespace

    from gleamx.train.run import eval_command

    args = SimpleNamespace(dataset_name=None, dataset_mixture=[{"path": "data/u1652", "weight": 3}, {"path": "b"}],
                           lang="both", task="label")
    assert " --data data/u1652 --split test " in eval_command("out", None, args)  # was "--data None"


@pytest.mark.slow
def test_a_streamed_mixture_trains_and_its_card_states_each_share(hub, two_sources, tmp_path):
    import yaml

    a, _, b_shards = two_sources
    recipe = yaml.safe_load(SFT_RECIPE.read_text())
    recipe.pop("dataset_name", None)
    recipe["dataset_mixture"] = [{"path": str(a), "weight": 3}, {"path": str(b_shards), "weight": 1}]
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(recipe))
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.sft import run_sft

    args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                        ["--config", str(path), "--model_name_or_path", str(hub["model"]), "--output_dir",
                         str(tmp_path / "o"), "--max_steps", "2", "--per_device_train_batch_size", "2",
                         "--dataset_streaming", "true", "--save_steps", "1000", "--eval_strategy", "no",
                         "--logging_steps", "1"])
    out = run_sft(*args)
    card = (out / "README.md").read_text()
    assert f"`mixture: {a} (75%), {b_shards} (25%)`" in card
    assert _losses(out)


@pytest.mark.slow
def test_eval_from_a_stream_equals_the_materialised_eval_and_reads_no_further(hub, tmp_path, gleamx_cli):
    """``gleamx eval --streaming`` on Parquet shards: the same predictions and results as the materialised eval of
    the same folder. With --limit, the stream stops at the samples evaluated: a later shard that is not Parquet at
    all is never read (the materialised load, which reads every shard first, fails on it)."""
    from gleamx.cli.eval import main as gleamx_eval

    repo = write_parquet_shards(hub["data"], tmp_path / "repo", n_shards=4, split="train")  # ~10 rows a shard
    args = ["--model", str(hub["model"]), "--data", str(repo), "--split", "train", "--lang", "en", "--task", "label",
            "--max-new-tokens", "6", "--batch-size", "2", "--limit", "3"]
    assert gleamx_cli(*args, "--output", str(tmp_path / "m"), entry=gleamx_eval).returncode == 0
    assert gleamx_cli(*args, "--output", str(tmp_path / "s"), "--streaming", entry=gleamx_eval).returncode == 0

    def answers(out: Path) -> list[tuple]:
        rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        return [(r["id"], r["input"], r["prediction"], r["p_yes"]) for r in rows]

    def results(out: Path) -> dict:
        r = json.loads((out / "results.json").read_text())
        return {k: v for k, v in r.items() if k not in ("config", "model_index", "timing")}

    assert len(answers(tmp_path / "m")) == 3
    assert answers(tmp_path / "s") == answers(tmp_path / "m")
    assert results(tmp_path / "s") == results(tmp_path / "m")
    last = sorted((repo / "data").glob("train-*.parquet"))[-1]
    last.write_bytes(b"not parquet")
    assert gleamx_cli(*args, "--output", str(tmp_path / "s2"), "--streaming", entry=gleamx_eval).returncode == 0
    assert answers(tmp_path / "s2") == answers(tmp_path / "m")
    failed = gleamx_cli(*args, "--output", str(tmp_path / "m2"), entry=gleamx_eval)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr  # datasets' progress bars, then one error
    # all of it streamed: the shard that is no Parquet is one line naming the data, not a pyarrow traceback
    failed = gleamx_cli(*[a for a in args if a not in ("--limit", "3")], "--output", str(tmp_path / "s3"), "--streaming",
                        entry=gleamx_eval)
    assert failed.returncode != 0 and len(failed.stderr.strip().splitlines()) == 1
    assert f"{repo}: stream: cannot read (ArrowInvalid" in failed.stderr


@pytest.mark.parametrize("streamed", [False, True], ids=["materialised", "streamed"])
def test_eval_of_a_split_with_no_samples_is_one_line_not_a_report_of_none(hub, tmp_path, gleamx_cli, streamed):
    from gleamx.cli.eval import main as gleamx_eval

    out = tmp_path / "e"
    failed = gleamx_cli("--model", str(hub["model"]), "--data", str(hub["data"]), "--split", "nosuch",
                        "--output", str(out), *(["--streaming"] if streamed else []), entry=gleamx_eval)
    assert failed.returncode == 2 and not out.exists()
    assert failed.stderr.strip() == f"error: {hub['data']}: samples: no samples found with split 'nosuch'"
