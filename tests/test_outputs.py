"""The one output rule (gleamx/outputs.py): never into an input, a record of what gleamx wrote, ``--overwrite``
replaces only that, the wrong kind of output is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError
from gleamx.outputs import RECORD, claim_file, claim_folder, read_record


def _write(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)


def test_a_new_folder_is_made_and_records_what_was_written(tmp_path):
    out = claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 4}, overwrite=False)
    _write(out.path, "train.jsonl", "images/a.png")
    out.done()
    record = read_record(tmp_path / "out")
    assert record["command"] == "data synth" and record["identity"] == {"n": 4}
    assert record["written"] == ["images", "train.jsonl"] and record["kept"] == []


def test_the_same_command_and_settings_may_write_again(tmp_path):
    for _ in range(2):
        out = claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 4}, overwrite=False)
        _write(out.path, "train.jsonl")
        out.done()


def test_other_settings_or_another_command_are_refused_naming_the_change(tmp_path):
    out = claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 4, "seed": 0},
                       overwrite=False)
    _write(out.path, "train.jsonl")
    out.done()
    with pytest.raises(GleamConfigError, match=r"^--out: .* a run of `gleamx data synth` with other settings \(changed: seed\); "
                                               r".*--overwrite"):
        claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 4, "seed": 1}, overwrite=False)
    with pytest.raises(GleamConfigError, match=r"holds the output of `gleamx data synth`"):
        claim_folder(tmp_path / "out", "--out", command="data pairs", identity={"n": 4}, overwrite=False)


def test_a_folder_of_the_users_files_is_refused_and_overwrite_keeps_them(tmp_path):
    folder = tmp_path / "out"
    _write(folder, "notes.txt", "mine/photo.png")
    with pytest.raises(GleamConfigError, match=r"^--out: .* holds files gleamx did not write \(e.g. mine\)"):
        claim_folder(folder, "--out", command="data synth", identity={}, overwrite=False)
    out = claim_folder(folder, "--out", command="data synth", identity={}, overwrite=True)
    _write(out.path, "train.jsonl")
    out.done()
    # a rerun (same settings) is not refused for the files accepted once; a new --overwrite keeps them again
    claim_folder(folder, "--out", command="data synth", identity={}, overwrite=False).done()
    claim_folder(folder, "--out", command="data synth", identity={"n": 2}, overwrite=True).done()
    assert (folder / "notes.txt").read_text() == "notes.txt" and (folder / "mine" / "photo.png").is_file()
    assert not (folder / "train.jsonl").exists()  # gleamx's own file was replaced


def test_overwrite_deletes_only_what_gleamx_wrote(tmp_path):
    out = claim_folder(tmp_path / "out", "--out", command="data pairs", identity={"seed": 0}, overwrite=False)
    _write(out.path, "train.jsonl", "test.jsonl")
    out.done()
    _write(out.path, "my_analysis.csv")  # the user adds a file afterwards
    claim_folder(tmp_path / "out", "--out", command="data pairs", identity={"seed": 1}, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD, "my_analysis.csv"]


def test_a_killed_run_counts_everything_but_the_users_files_as_its_own(tmp_path):
    folder = tmp_path / "out"
    _write(folder, "keep.txt")
    out = claim_folder(folder, "--out", command="annotate", identity={"m": 1}, overwrite=True)
    _write(out.path, "partial.jsonl")  # killed before done()
    claim_folder(folder, "--out", command="annotate", identity={"m": 1}, overwrite=False)  # the resume is let in
    claim_folder(folder, "--out", command="annotate", identity={"m": 2}, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [RECORD, "keep.txt"]


def test_overwrite_never_replaces_a_users_file_the_command_writes(tmp_path):
    _write(tmp_path / "out", "train.jsonl")
    with pytest.raises(GleamConfigError, match=r"out/train.jsonl was not written by gleamx"):
        claim_folder(tmp_path / "out", "--out", command="data synth", identity={}, overwrite=True,
                     writes=["train.jsonl"])
    assert (tmp_path / "out" / "train.jsonl").read_text() == "train.jsonl"


@pytest.mark.parametrize("out, relation", [("data", "is"), ("data/sub", "lies in"), (".", "holds")])
def test_a_folder_is_never_written_into_its_own_input(tmp_path, monkeypatch, out, relation):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data", "train.jsonl")
    with pytest.raises(GleamConfigError, match=rf"^--out: {out} {relation} --data data: a command never writes"):
        claim_folder(out, "--out", command="data pairs", identity={}, overwrite=True, inputs={"--data": "data"})
    assert (tmp_path / "data" / "train.jsonl").is_file()


def test_hub_ids_and_unset_inputs_are_not_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    claim_folder("merged", "--out", command="merge", identity={}, overwrite=False,
                 inputs={"--base": "Qwen/Qwen2.5-VL-3B-Instruct", "--adapter": None})


def test_a_file_where_a_folder_is_written_and_the_reverse_are_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(GleamConfigError, match=r"^--out: .*f is a file \(expected a folder to write into\)$"):
        claim_folder(tmp_path / "f", "--out", command="data synth", identity={}, overwrite=True)
    (tmp_path / "d").mkdir()
    with pytest.raises(GleamConfigError, match=r"^--out: .*d is a folder \(expected a file name to write\)$"):
        claim_file(tmp_path / "d", "--out", overwrite=True)


def test_a_file_is_replaced_only_with_overwrite_and_never_an_input(tmp_path):
    sheet = tmp_path / "sheet.csv"
    assert claim_file(sheet, "--out", overwrite=False) == sheet
    sheet.write_text("a")
    with pytest.raises(GleamConfigError, match=r"sheet.csv exists; .*--overwrite"):
        claim_file(sheet, "--out", overwrite=False)
    claim_file(sheet, "--out", overwrite=True)
    (tmp_path / "data").mkdir()
    with pytest.raises(GleamConfigError, match=r"lies in --data"):
        claim_file(tmp_path / "data" / "test.jsonl", "--out", overwrite=True, inputs={"--data": tmp_path / "data"})
    with pytest.raises(GleamConfigError, match=r" is --src "):
        claim_file(sheet, "--out", overwrite=True, inputs={"--src": sheet})


def test_a_folder_from_before_records_is_the_commands_own(tmp_path):
    """A folder holding the command's marker file and no record: an older gleamx wrote it; refused as another run,
    replaced whole by --overwrite."""
    _write(tmp_path / "out", "synth_config.json", "train.jsonl")
    with pytest.raises(GleamConfigError, match=r"a run of `gleamx data synth` with other settings"):
        claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 1}, overwrite=False,
                     marker="synth_config.json")
    claim_folder(tmp_path / "out", "--out", command="data synth", identity={"n": 1}, overwrite=True,
                 marker="synth_config.json", writes=["train.jsonl"])
    assert [p.name for p in (tmp_path / "out").iterdir()] == [RECORD]


# --- the rule, held by every command that writes (through the command line) -------------------------------


def test_data_synth_keeps_to_the_rule(tmp_path, gleamx_cli):
    out = tmp_path / "synth"
    assert gleamx_cli("data", "synth", "--out", out, "--n", "8").returncode == 0
    again = gleamx_cli("data", "synth", "--out", out, "--n", "12")
    assert again.returncode == 2 and again.stderr.strip().endswith(
        "holds a run of `gleamx data synth` with other settings (changed: n); choose another --out, or pass --overwrite to "
        "replace it (files gleamx did not write are kept)")
    (out / "my_notes.txt").write_text("mine")
    assert gleamx_cli("data", "synth", "--out", out, "--n", "12", "--overwrite").returncode == 0
    assert (out / "my_notes.txt").read_text() == "mine" and len((out / "train.jsonl").read_text().splitlines()) > 8
    (tmp_path / "file").write_text("x")
    r = gleamx_cli("data", "synth", "--out", tmp_path / "file", "--n", "8")
    assert r.returncode == 2 and r.stderr.strip() == f"error: --out: {tmp_path / 'file'} is a file (expected a " \
                                                      "folder to write into)"


def test_convert_and_merge_never_write_into_their_input(tmp_path, gleamx_cli):
    data = tmp_path / "synth"
    assert gleamx_cli("data", "synth", "--out", data, "--n", "8").returncode == 0
    r = gleamx_cli("data", "convert", data / "train.jsonl", "--to", "jsonl", "--out", data / "train.jsonl",
                   "--overwrite")
    assert r.returncode == 2 and " is src " in r.stderr and "never writes into its own input" in r.stderr
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    r = gleamx_cli("merge", "--base", base, "--adapter", tmp_path / "adapter", "--out", base)
    assert r.returncode == 2 and f"--out: {base} is --base {base}" in r.stderr
    assert (base / "config.json").read_text() == "{}"


def test_eval_and_models_tiny_keep_to_the_rule(tmp_path, gleamx_cli):
    data = tmp_path / "synth"
    assert gleamx_cli("data", "synth", "--out", data, "--n", "8").returncode == 0
    preds = tmp_path / "preds.jsonl"
    preds.write_text("")
    r = gleamx_cli("eval", "--predictions", preds, "--data", data, "--output", data / "eval", "--overwrite")
    assert r.returncode == 2 and f"--output: {data / 'eval'} lies in --data {data}" in r.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my report")
    r = gleamx_cli("eval", "--predictions", preds, "--data", data, "--output", mine)
    assert r.returncode == 2 and "holds files gleamx did not write (e.g. report.html)" in r.stderr
    assert (mine / "report.html").read_text() == "my report"
    r = gleamx_cli("models", "tiny", "--out", mine, "--overwrite")
    assert r.returncode == 2 and "needs a folder of its own" in r.stderr


def test_a_claimed_folder_is_abandoned_only_if_the_claim_made_it_and_nothing_was_written(tmp_path):
    from gleamx.outputs import abandon_claims, forget_claims

    forget_claims()
    empty = claim_folder(tmp_path / "empty", "--out", command="eval", identity={}, overwrite=False)
    wrote = claim_folder(tmp_path / "wrote", "--out", command="eval", identity={}, overwrite=False)
    _write(wrote.path, "predictions.jsonl")  # answers a run paid for are never removed
    (tmp_path / "users").mkdir()
    claim_folder(tmp_path / "users", "--out", command="eval", identity={}, overwrite=False)  # there before
    abandon_claims()
    assert not empty.path.exists() and (wrote.path / "predictions.jsonl").is_file() and (tmp_path / "users").is_dir()
    finished = claim_folder(tmp_path / "finished", "--out", command="eval", identity={}, overwrite=False)
    forget_claims()  # a command that finished: a later command's error in the same process leaves it alone
    abandon_claims()
    assert finished.path.is_dir()


def test_a_command_refused_after_its_claim_leaves_no_folder(tmp_path, gleamx_cli, synth_dir, models_tiny_dir):
    """The data or the model is found wanting only after the output folder was claimed (eval in one language and
    in two, SFT): the one line, and no folder of gleamx's bookkeeping left behind."""
    import yaml

    data, model = synth_dir(16, seed=1, image_size=64), models_tiny_dir("qwen2_5_vl")
    for lang in ("en", "en,zh"):
        out = tmp_path / f"eval-{lang}"
        r = gleamx_cli("eval", "--model", model, "--data", data, "--split", "nosuch", "--lang", lang, "--output", out)
        assert r.returncode == 2 and "no samples found with split 'nosuch'" in r.stderr and not out.exists()
    recipe = tmp_path / "r.yaml"
    out = tmp_path / "sft"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(model), "dataset_name": str(data),
                                      "dataset_train_split": "nosuch", "output_dir": str(out), "max_steps": 1,
                                      "use_cpu": True, "report_to": "none"}))
    r = gleamx_cli("sft", "--config", recipe)
    assert r.returncode == 2 and "no samples found with split 'nosuch'" in r.stderr and not out.exists()
