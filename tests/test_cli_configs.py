"""One way in: every command is a config dataclass, parsed by one parser, with its checks in ``__post_init__``."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import typing
from pathlib import Path

import pytest

from gleamx.cli.main import COMMANDS, command_of, main, parse_command
from gleamx.parsing import command_parser
from gleamx.errors import GleamConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_COMMANDS = sorted(name for name, cmd in COMMANDS.items() if cmd.config is not None)


def _actions(name: str) -> dict[str, argparse.Action]:
    """Each field's main action (a ``bool`` field defaulting to True also gets a ``--no-*`` one)."""
    parser = command_parser(COMMANDS[name].config(), prog=f"gleamx {name}")
    actions: dict[str, argparse.Action] = {}
    for a in parser._actions:
        if a.dest not in ("help", "config"):
            actions.setdefault(a.dest, a)
    return actions


@pytest.mark.parametrize("name", CONFIG_COMMANDS)
def test_a_flag_exists_exactly_when_a_field_does(name: str) -> None:
    config = COMMANDS[name].config()
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}
    actions = _actions(name)
    assert set(actions) == set(fields), f"{name}: flags without fields or fields without flags"
    hints = typing.get_type_hints(config)
    for fname, f in fields.items():
        action = actions[fname]
        assert f.metadata.get("help"), f"{name}: {fname} has no help text"
        if not action.option_strings:
            assert f.metadata.get("positional"), f"{name}: {fname} is positional without saying so"
            continue
        assert f"--{fname}" in action.option_strings
        if "_" in fname:
            assert f"--{fname.replace('_', '-')}" in action.option_strings  # the spelling the README uses
        literal = hints[fname]
        if typing.get_origin(literal) is typing.Union:
            literal = next(a for a in typing.get_args(literal) if a is not type(None))
        if typing.get_origin(literal) is typing.Literal:  # choices come from the type, nowhere else
            assert tuple(action.choices) == typing.get_args(literal), f"{name}: {fname}"


def test_commands_are_found_by_their_words() -> None:
    assert command_of(["data", "synth", "--n", "3"]) == ("data synth", ["--n", "3"])
    assert command_of(["eval", "--data", "d"]) == ("eval", ["--data", "d"])
    assert command_of(["retrieval", "train", "--config", "x"]) == ("retrieval train", ["--config", "x"])
    assert command_of(["nope"]) == (None, ["nope"])


def test_api_and_command_line_meet_the_same_checks(capsys) -> None:
    from gleamx.eval.config import EvalConfig
    from gleamx.retrieval.run_config import LocalizeConfig

    with pytest.raises(GleamConfigError, match=r"^--limit: expected an integer >= 1, got 0$"):
        EvalConfig(data="d", model="m", limit=0)
    assert main(["eval", "--data", "d", "--model", "m", "--limit", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --limit: expected an integer >= 1, got 0"
    with pytest.raises(GleamConfigError, match=r"^--k: expected an integer >= 1, got 0$"):
        LocalizeConfig(encoder="e", model="m", data="d", output="o", k=0)
    with pytest.raises(GleamConfigError, match=r"^--lang: expected one of en, zh, got 'fr'$"):
        EvalConfig(data="d", model="m", lang="fr")  # the API is not restricted by argparse's choices


def test_list_flags_take_commas_spaces_or_yaml_lists(tmp_path: Path) -> None:
    a = parse_command("retrieval eval", ["--encoder", "e", "--data", "d", "--output", "o", "--views", "uav,ground",
                                          "--ks", "1,5", "10"])
    assert (a.views, a.ks) == (["uav", "ground"], [1, 5, 10])
    yaml = tmp_path / "r.yaml"
    yaml.write_text("encoder: e\ndata: d\noutput: o\nks: [1, 5]\n")
    assert parse_command("retrieval eval", ["--config", str(yaml)]).ks == [1, 5]
    with pytest.raises(GleamConfigError, match=r"^--ks: expected comma-separated integers >= 1"):
        parse_command("retrieval eval", ["--encoder", "e", "--data", "d", "--output", "o", "--ks", "1,x"])


def test_an_eval_is_a_yaml_recipe_too(tmp_path: Path) -> None:
    cfg = parse_command("eval", ["--config", "eval/zh_explain", "--model", "m", "--batch-size", "2"])
    assert (cfg.lang, cfg.task, cfg.split, cfg.batch_size, cfg.model) == ("zh", "explain", "test", 2, "m")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: d\nmodel: m\nmax_new_token: 8\n")
    with pytest.raises(GleamConfigError) as e:
        parse_command("eval", ["--config", str(bad)])
    assert str(e.value) == f"{bad}: unknown config key(s): 'max_new_token' (did you mean 'max_new_tokens'?)"
    with pytest.raises(GleamConfigError, match=r"nowhere\.yaml: config not found \(expected a YAML file\)$"):
        parse_command("data synth", ["--config", str(tmp_path / "nowhere.yaml")])
    with pytest.raises(GleamConfigError, match="packaged eval configs: eval/en_label, eval/zh_explain"):
        parse_command("eval", ["--config", "eval/nope"])


def test_bad_command_lines_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["data", "synth", "--out", "x", "--difficulty", "extreme"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: gleamx data synth: argument --difficulty: invalid choice") and "\n" not in err
    assert main(["data", "synth", "--out", "x", "--n", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --n: expected a positive number of pairs, got 0"
    assert main(["eval", "--data", "d"]) == 2
    assert "give exactly one of --model (generate) or --predictions" in capsys.readouterr().err
    # a flag no field takes is one line too (it was a ValueError traceback from HfArgumentParser)
    assert main(["eval", "--data", "d", "--model", "m", "--bogus", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: gleamx eval: unknown command-line argument(s): --bogus 1"


def test_results_carry_the_resolved_config_and_the_gleamx_version(data_small_jsonl: Path, tmp_path: Path) -> None:
    import gleamx
    from gleamx.data import load_samples

    samples = load_samples(data_small_jsonl).samples
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": "Answer: Yes"}) + "\n" for s in samples))
    out = tmp_path / "eval"
    assert main(["eval", "--predictions", str(preds), "--data", str(data_small_jsonl), "--split", "test",
                 "--task", "label", "--bootstrap", "0", "--no-explanation-metrics", "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["predictions"] == str(preds) and results["config"]["task"] == "label"
    assert results["gleamx"]["version"] == gleamx.__version__
    assert results["gleamx"]["commit"] is None or len(results["gleamx"]["commit"]) == 40


def test_no_command_line_is_built_by_hand_in_the_package() -> None:
    """Flags come from config fields only: no ``add_argument`` outside the one parser."""
    allowed = {ROOT / "gleamx" / "parsing.py"}
    offenders = []
    for path in (ROOT / "gleamx").rglob("*.py"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "add_argument":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_each_choice_list_is_defined_once() -> None:
    """The en/zh, explain/label, dtype and arch choice lists are spelled out only in gleamx/choices.py (the
    ``evaluate`` metric modules excepted: ``evaluate.load`` runs them as standalone files)."""
    import re

    lists = [("en", "zh"), ("explain", "label"), ("auto", "bfloat16", "float16", "float32"),
             ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")]
    patterns = [re.compile(r"[\[(]\s*" + r",\s*".join(f'"{v}"' for v in values) + r"\s*[\])]") for values in lists]
    offenders = [f"{p.relative_to(ROOT)}: {pat.pattern}" for p in (ROOT / "gleamx").rglob("*.py")
                 if p.name != "choices.py" and "metrics" not in p.parts
                 for pat in patterns if pat.search(p.read_text(encoding="utf-8"))]
    assert not offenders, offenders


def test_one_pixel_budget_check_for_every_command_and_recipe():
    """min > max is refused in one line by eval, localize, app and the SFT recipe alike (localize had no check)."""
    from gleamx.app.config import AppConfig
    from gleamx.cli.main import parse_command
    from gleamx.train.arguments import GleamScriptArguments

    for name, argv in (("eval", ["--predictions", "p", "--data", "d", "--output", "o"]),
                       ("localize", ["--encoder", "e", "--model", "m", "--data", "d", "--output", "o"])):
        with pytest.raises(GleamConfigError, match=r"^--min-pixels: expected at most --max-pixels \(100\), got 200$"):
            parse_command(name, [*argv, "--min-pixels", "200", "--max-pixels", "100"])
        with pytest.raises(GleamConfigError, match=r"^--max-pixels: expected an integer >= 1, got 0$"):
            parse_command(name, [*argv, "--max-pixels", "0"])
    with pytest.raises(GleamConfigError, match=r"^--min-pixels: expected at most"):
        AppConfig(min_pixels=200, max_pixels=100)
    with pytest.raises(GleamConfigError, match=r"^recipe: min_pixels: expected at most max_pixels \(100\), got 200$"):
        GleamScriptArguments(min_pixels=200, max_pixels=100)
