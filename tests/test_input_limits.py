"""Bounded inputs: every numeric option has a range and NaN/inf/huge numbers are one line; YAML and JSON are read
within depth, size and alias-expansion limits, and a YAML key given twice is refused."""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
import tracemalloc
import types
import typing
from pathlib import Path

import pytest

from gleamx.checks import option_flag, recipe_option
from gleamx.cli.main import COMMANDS, EXAMPLES, main, parse_command
from gleamx.errors import GleamConfigError, GleamDataError, Problem
from gleamx.parsing import MAX_YAML_DEPTH, MAX_YAML_NODES, load_yaml, read_yaml

ROOT = Path(__file__).resolve().parent.parent


def _recipe_configs() -> dict[str, tuple[type, typing.Callable[[str], str]]]:
    """gleamx's own dataclasses of the recipe scripts, and how their messages name an option."""
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.train.arguments import GleamGRPOArguments, GleamScriptArguments

    return {"sft": (GleamScriptArguments, recipe_option), "grpo": (GleamGRPOArguments, recipe_option),
            "retrieval train": (RetrievalConfig, str)}


CONFIG_COMMANDS = sorted(name for name, cmd in COMMANDS.items() if cmd.config is not None)


def _inner(tp: typing.Any) -> typing.Any:
    """``X`` of ``X | None`` (None for a union of several types, which no numeric option is)."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else None


def _is_list(tp: typing.Any) -> bool:
    return typing.get_origin(_inner(tp)) is list


def _numeric(tp: typing.Any) -> bool:
    """``int``, ``float``, an optional one, or a list of them (bool and Literal choices are not numbers)."""
    tp = _inner(tp)
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    return tp in (int, float)


def _numeric_fields(config: type) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(config)
    return [f for f in dataclasses.fields(config) if f.init and _numeric(hints[f.name])]


def _every_config() -> list[tuple[str, type]]:
    return [(name, COMMANDS[name].config()) for name in CONFIG_COMMANDS] + \
        [(name, cls) for name, (cls, _) in _recipe_configs().items()]


# --- 1. every numeric option has a range ------------------------------------------------------------------------


def test_every_numeric_option_of_every_command_and_recipe_has_a_range() -> None:
    missing = [f"{name}: {f.name}" for name, config in _every_config() for f in _numeric_fields(config)
               if not (f.metadata.get("range") and None not in f.metadata["range"])]
    assert not missing, f"numeric options without a low and high bound: {missing}"
    assert sum(len(_numeric_fields(c)) for _, c in _every_config()) > 60  # the walk found the options


def _valid(name: str) -> typing.Any:
    """A valid config of ``name``: a command parsed from its first --help example, a recipe class's defaults."""
    if name in _recipe_configs():
        return _recipe_configs()[name][0]()
    example = EXAMPLES.get(name, ("gleamx " + name,))[0]
    return parse_command(name, shlex.split(example)[1 + len(name.split()):])


@pytest.mark.parametrize("name", CONFIG_COMMANDS + sorted(_recipe_configs()))
def test_every_config_refuses_a_number_above_its_range(name: str) -> None:
    """Each config enforces its ranges itself (``check_ranges`` in ``__post_init__``): flags, YAML and API alike."""
    config = _valid(name)
    label = _recipe_configs()[name][1] if name in _recipe_configs() else option_flag
    hints = typing.get_type_hints(type(config))
    for f in _numeric_fields(type(config)):
        high = f.metadata["range"][1]
        too_big = high + 1 if isinstance(high, int) else high * 2 + 1
        value = [too_big] if _is_list(hints[f.name]) else too_big
        with pytest.raises(GleamConfigError) as e:
            dataclasses.replace(config, **{f.name: value})
        assert str(e.value).startswith(f"{label(f.name)}: expected"), str(e.value)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize(("argv", "line"), [
    # 1e7 negatives per positive held 2.5 GB before a MemoryError
    (["--neg-ratio", "1e7"], "error: --neg-ratio: expected a number from 0 to 100, got 10000000.0"),
    (["--neg-ratio", "nan"], "error: --neg-ratio: expected a finite number, got nan"),
    (["--hard-ratio", "inf"], "error: --hard-ratio: expected a finite number, got inf"),
    # NaN passed the sum check (every comparison with NaN is false)
    (["--split-fractions", "nan,0,1"], "error: --split-fractions: expected three numbers >= 0 summing to 1 "
                                       "(train,val,test), got [nan, 0.0, 1.0]"),
    (["--split-fractions", "0.5,0.5,1e400"], "error: --split-fractions: expected three numbers >= 0 summing to 1 "
                                             "(train,val,test), got [0.5, 0.5, inf]"),
    (["--seed", "4294967296"], "error: --seed: expected an integer from 0 to 4294967295, got 4294967296"),
    (["--seed", "9" * 5000], "error: gleamx data pairs: argument --seed: invalid int value: "
                             "'99999999999999999999...' (5000 characters) (see gleamx data pairs --help)"),
])
def test_bad_numbers_on_a_command_line_are_one_short_line(argv: list[str], line: str, capsys) -> None:
    try:
        code = main(["data", "pairs", "--retrieval", "r", "--out", "o", *argv])
    except SystemExit as e:  # argparse's own refusals exit from the parser
        code = e.code
    assert code == 2
    assert capsys.readouterr().err.strip() == line


@pytest.mark.parametrize(("yaml_text", "line"), [
    ("seed: " + "9" * 5000, "line 3: a number of 5000 characters (expected at most 100)"),
    ("seed: 0x" + "f" * 5000, "line 3: a number of 5002 characters (expected at most 100)"),
    ("seed: 0x" + "f" * 40, "--seed: expected a number that fits in 64 bits, got a number of about 49 digits"),
    ("neg_ratio: .nan", "--neg-ratio: expected a finite number, got nan"),
    ("neg_ratio: 1000.0", "--neg-ratio: expected a number from 0 to 100, got 1000.0"),
    ("split_fractions: [.nan, 0, 1]", "--split-fractions: expected finite numbers, got [nan, 0, 1]"),
])
def test_bad_numbers_in_a_config_yaml_are_one_short_line(tmp_path: Path, yaml_text: str, line: str,
                                                         capsys) -> None:
    config = tmp_path / "pairs.yaml"
    config.write_text(f"retrieval: r\nout: o\n{yaml_text}\n")
    assert main(["data", "pairs", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert line in err and "\n" not in err and len(err) < 300, err


def _grpo_parse(*overrides: str) -> tuple:
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.parsing import grouped, parse_recipe
    from gleamx.recipes import resolve_config
    from gleamx.train.arguments import GleamGRPOArguments

    parser = grouped(TrlParser)((GleamGRPOArguments, GRPOConfig, ModelConfig), prog="gleamx grpo")
    return parse_recipe(parser, resolve_config(["--config", "tiny/grpo", *overrides], "grpo"))


@pytest.mark.parametrize(("overrides", "message"), [
    # TRL's own fields: refused before TRL's __post_init__ sees them (inf save_steps was an OverflowError there)
    (["--reward_weights", "nan", "1"], "recipe: reward_weights: expected finite numbers, got [nan, 1.0]"),
    (["--save_steps", "inf"], "recipe: save_steps: expected a finite number, got inf"),
    (["--learning_rate", "nan"], "recipe: learning_rate: expected a finite number, got nan"),
    (["--max_steps", "9" * 30], "recipe: max_steps: expected a number that fits in 64 bits"),
    # gleamx's own recipe fields: their ranges
    (["--format_max_chars", "10000000"], "recipe: format_max_chars: expected an integer from 1 to 1000000, "
                                         "got 10000000"),
    (["--vision_lr", "5"], "recipe: vision_lr: expected a number from 0 to 1, got 5.0"),
])
def test_recipe_numbers_are_checked_at_parse_time(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(GleamConfigError) as e:
        _grpo_parse("--output_dir", str(tmp_path / "o"), *overrides)
    assert str(e.value).startswith(message), str(e.value)


def test_a_retrieval_phase_meets_the_range_of_the_setting_it_replaces() -> None:
    from gleamx.retrieval.config import RetrievalConfig

    with pytest.raises(GleamConfigError, match=r"^phases\[1\]\.learning_rate: expected a number from 0 to 1, got 5$"):
        RetrievalConfig(phases=[{"epochs": 1}, {"learning_rate": 5}])
    with pytest.raises(GleamConfigError, match=r"^phases\[0\]\.epochs: expected an integer from 1 to 10000"):
        RetrievalConfig(phases=[{"epochs": 10**6}])


# --- 2. YAML within limits --------------------------------------------------------------------------------------


def _billion_laughs() -> str:
    """Nine levels of nine aliases: 9**9 (387 M) strings when expanded, in about 1 KB."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(8):
        prev, name = chr(97 + i), chr(98 + i)
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(levels) + "\n"


def test_a_billion_laughs_config_fails_fast_in_one_line_without_growing(tmp_path: Path, capsys) -> None:
    bomb = tmp_path / "lol.yaml"
    bomb.write_text("retrieval: r\nout: o\n" + _billion_laughs())
    assert bomb.stat().st_size < 1024
    tracemalloc.start()
    start = time.perf_counter()
    try:
        code = main(["data", "pairs", "--config", str(bomb)])
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (f"error: {bomb}: line 8: more than {MAX_YAML_NODES} values with aliases expanded "
                                 "(aliases that repeat aliases: a 'billion laughs' file?)")
    assert took < 2, f"{took:.1f} s"
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # it cost 3.5-5 GB


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 5000 + "]" * 5000, f"line 1: nested deeper than {MAX_YAML_DEPTH} levels"),
    ("".join(" " * i + "-\n" for i in range(100)), f"line {MAX_YAML_DEPTH + 1}: nested deeper than "
                                                       f"{MAX_YAML_DEPTH} levels"),
    ("a: &a [1, *a]\n", "line 1: alias *a refers to a value that contains it"),
    ("seed: 1\nout: o\nseed: 2\n", "line 3: duplicate key 'seed' (give each key once; the last one would win "
                                    "silently)"),
    ("lora:\n  r: 8\n  r: 16\n", "line 3: duplicate key 'r'"),
])
def test_deep_recursive_or_duplicated_yaml_is_one_line(text: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(GleamConfigError) as e:
        load_yaml(text, "x.yaml")
    assert str(e.value).startswith(f"x.yaml: {message}") and "\n" not in str(e.value)
    assert time.perf_counter() - start < 2


def test_merge_keys_may_still_override_what_they_merge() -> None:
    assert load_yaml("base: &b {lr: 1, r: 8}\nrun:\n  <<: *b\n  r: 16\n", "x") == \
        {"base": {"lr": 1, "r": 8}, "run": {"lr": 1, "r": 16}}


def test_duplicate_keys_in_a_config_name_the_key_and_file(tmp_path: Path, capsys) -> None:
    config = tmp_path / "synth.yaml"
    config.write_text("out: a\nn: 10\nn: 20\n")
    assert main(["data", "synth", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {config}: line 3: duplicate key 'n' (give each key once; "
                                               "the last one would win silently)")


def test_an_oversized_config_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    import gleamx.parsing as parsing

    monkeypatch.setattr(parsing, "MAX_YAML_BYTES", 100)
    config = tmp_path / "big.yaml"
    config.write_text("out: a\n" + "#" * 200 + "\n")
    with pytest.raises(GleamConfigError, match=r"big\.yaml: larger than 100 bytes"):
        read_yaml(config)


def test_every_packaged_recipe_and_config_reads_within_the_limits() -> None:
    yamls = sorted((ROOT / "gleamx" / "recipes").rglob("*.yaml"))
    assert len(yamls) > 10
    for path in yamls:
        assert isinstance(read_yaml(path), dict), path


def test_a_deep_json_option_value_is_one_line() -> None:
    from gleamx.retrieval.config import RetrievalConfig

    with pytest.raises(GleamConfigError, match=rf"^phases: line 1: nested deeper than {MAX_YAML_DEPTH} levels$"):
        RetrievalConfig(phases="[" * 5000 + "]" * 5000)


# --- 3. JSON within limits --------------------------------------------------------------------------------------


def _sample_line(sid: str) -> str:
    return json.dumps({"id": sid, "query_image": "q.png", "satellite_image": "s.png", "query_view": "uav",
                       "label": True, "source": "t", "split": "test"})


def test_deep_or_huge_jsonl_lines_are_one_problem_each_and_the_rest_still_reads(tmp_path: Path,
                                                                              monkeypatch) -> None:
    import gleamx.data.text as text
    from gleamx.data.jsonl import iter_jsonl_rows

    monkeypatch.setattr(text, "MAX_LINE_BYTES", 12_000)
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join([_sample_line("a"), "[" * 5000 + "]" * 5000, '{"id": ' + "9" * 5000 + "}",
                               '{"id": "' + "x" * 50_000 + '"}', _sample_line("b")]) + "\n")
    rows = list(iter_jsonl_rows(data))
    problems = [str(r) for _, r in rows if isinstance(r, Problem)]
    assert problems == [f"{data}:2: json: expected one JSON object per line (nested deeper than "
                        f"{text.MAX_JSON_DEPTH} levels)",
                        f"{data}:3: json: expected one JSON object per line (a number too long to convert (more "
                        "digits than Python converts))",
                        f"{data}:4: line: longer than 12000 bytes (50011); expected one record per line"]
    assert [r["id"] for _, r in rows if isinstance(r, dict)] == ["a", "b"]


def test_a_deep_jsonl_line_is_a_validation_problem_not_a_traceback(tmp_path: Path, capsys) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("[" * 5000 + "]" * 5000 + "\n")
    assert main(["data", "validate", str(data)]) == 1
    out = capsys.readouterr().out
    assert "nested deeper than" in out and "Traceback" not in out


def test_a_review_log_skips_lines_past_the_limits(tmp_path: Path) -> None:
    from gleamx.eval.appendlog import read_records

    log = tmp_path / "revisions.jsonl"
    log.write_text('{"id": "a"}\n' + "[" * 5000 + "]" * 5000 + '\n{"id": ' + "9" * 5000 + '}\n{"id": "b"}\n')
    assert [row["id"] for _, row in read_records(log)] == ["a", "b"]


def test_a_deep_sharegpt_json_list_is_one_line(tmp_path: Path) -> None:
    from gleamx.data.text import iter_json_list

    data = tmp_path / "d.json"
    data.write_text("[{\"messages\": []}, " + "[" * 100_000 + "]" * 100_000 + "]")
    with pytest.raises(GleamDataError, match=r"d\.json:1: json: row 2 nests too deeply to parse$"):
        list(iter_json_list(data))
