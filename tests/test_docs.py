"""The README and docs/*.md say only what the code does: every ``gleamx`` command they show exists and takes the
flags they give it, every recipe script, ``--config`` and repo path they name is there, and every link between
them lands. Parsing only: no command runs, no model loads. The markdown is read by ``doc_commands`` (shared with
test_packaging.py and test_strict_skips.py)."""

from __future__ import annotations

import argparse
import importlib
import re
import warnings
from functools import lru_cache
from pathlib import Path

import pytest

import doc_commands as docs
from doc_commands import ROOT, DocCommand

README_MAX_LINES = 150
NOT_A_FLAG = re.compile(r"-\d")  # a negative number is a value


# --- the parsers, built the way the commands build them, without running anything --------------------------------


@lru_cache(maxsize=None)
def gleamx_options(name: str) -> dict[str, argparse.Action]:
    """Every option string ``gleamx NAME`` accepts, with its action."""
    from gleamx.cli.main import COMMANDS

    cmd = COMMANDS[name]
    if cmd.config is None:  # sft, grpo, retrieval train: the recipe script's own TrlParser
        options = dict(recipe_options(recipe_module_of(name)))
    else:
        from gleamx.parsing import command_parser

        parser = command_parser(cmd.config(), prog=f"gleamx {name}")
        options = {s: a for a in parser._actions for s in a.option_strings}
    if cmd.config is None or cmd.launches:  # the launcher's flags (gleamx.cli.main._launch)
        launch = argparse.Action(["--accelerate_config", "--accelerate-config"], "accelerate_config")
        nproc = argparse.Action(["--num_processes", "--num-processes"], "num_processes", type=int)
        options.update({s: a for a in (launch, nproc) for s in a.option_strings})
    verbose = argparse.Action(["--verbose"], "verbose", nargs=0)  # gleamx.cli.main.main takes it anywhere
    return {**options, "--verbose": verbose}


@lru_cache(maxsize=None)
def recipe_module_of(name: str) -> str:
    """The recipe module ``gleamx NAME`` hands its arguments to (``gleamx.recipes.sft``), as ``COMMANDS`` runs it."""
    from unittest import mock

    from gleamx.cli import main as cli

    seen: list[str] = []
    with mock.patch.object(cli, "_run_recipe", lambda module, argv, prog: seen.append(module) or 0):
        cli.COMMANDS[name].run([])
    (module,) = seen
    return module


class _Parsed(Exception):
    pass


@lru_cache(maxsize=None)
def recipe_options(module: str) -> dict[str, argparse.Action]:
    """Every option string of the recipe script ``module``: the TrlParser its ``main`` builds (caught before it
    parses), plus ``--config``, which TrlParser reads itself."""
    from unittest import mock

    mod = importlib.import_module(module)
    built: list[argparse.ArgumentParser] = []

    def catch(parser, argv):
        built.append(parser)
        raise _Parsed

    with mock.patch.object(mod, "parse_recipe", catch), pytest.raises(_Parsed):
        mod.main([], prog=module)
    options = {s: a for a in built[0]._actions for s in a.option_strings}
    config = argparse.Action(["--config"], "config")
    return {**options, "--config": config}


@lru_cache(maxsize=None)
def accelerate_options() -> dict[str, argparse.Action]:
    from accelerate.commands.launch import launch_command_parser

    return {s: a for a in launch_command_parser()._actions for s in a.option_strings}


# --- reading a command line ---------------------------------------------------------------------------------------


def _clean(word: str) -> str:
    return word.strip("[]")


def flags(words: list[str]) -> list[tuple[str, str | None]]:
    """``(--flag, its value or None)`` for every flag in ``words`` (``--flag=value`` too)."""
    found = []
    words = [_clean(w) for w in words]
    for i, w in enumerate(words):
        if not w.startswith("-") or w in ("-", "--") or NOT_A_FLAG.match(w):
            continue
        name, eq, inline = w.partition("=")
        value = inline if eq else (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else None)
        found.append((name, value))
    return found


def check_flags(where: str, words: list[str], options: dict[str, argparse.Action]) -> list[str]:
    """One line per flag ``options`` lacks, per choice not among the flag's choices and per number that is none."""
    problems = []
    for flag, value in flags(words):
        action = options.get(flag)
        if action is None:
            problems.append(f"{where}: {flag} is not an option of this command")
            continue
        if value is None or docs.is_placeholder(value) or action.nargs == 0:
            continue
        if action.choices:
            for v in value.split("|"):  # `--layout university1652|vigor|cvusa`: each must be a choice
                if v not in action.choices:
                    problems.append(f"{where}: {flag} {v}: not one of {', '.join(map(str, action.choices))}")
        elif action.type in (int, float):
            try:
                action.type(value)
            except ValueError:
                problems.append(f"{where}: {flag} {value}: expected {action.type.__name__}")
    return problems


def gleamx_command(c: DocCommand) -> tuple[list[str], list[str]] | None:
    """``(names of the command(s) it runs, the words after them)`` for a ``gleamx``/``gleamx-eval`` line, or
    ``python -m gleamx.cli.main ...``; ``None`` for other lines. ``data synth|validate`` names both."""
    from gleamx.cli.main import COMMANDS

    words = [_clean(w) for w in c.words]
    if words[:3] == ["python", "-m", "gleamx.cli.main"] or words[:3] == ["python3", "-m", "gleamx.cli.main"]:
        words = ["gleamx", *words[3:]]
    if words[0] == "gleamx-eval":
        return ["eval"], words[1:]
    if words[0] != "gleamx":
        return None
    rest = words[1:]
    if not rest or rest[0].startswith("-") or docs.is_placeholder(rest[0]):
        return [], rest  # `gleamx`, `gleamx --help`, `gleamx COMMAND --help`
    heads = {name.split()[0] for name in COMMANDS if " " in name}
    if rest[0] in heads:
        if len(rest) == 1 or rest[1].startswith("-") or docs.is_placeholder(rest[1]):
            return [], rest[1:]  # a group alone: `gleamx retrieval`, `gleamx data --help`
        return [f"{rest[0]} {leaf}" for leaf in rest[1].split("|")], rest[2:]
    return rest[0].split("|"), rest[1:]


def recipe_run(c: DocCommand) -> tuple[str, str | None, list[str], list[str]] | None:
    """``(script or module as written, its recipe module or None, its words, the launcher's words)`` for
    ``python X.py``, ``python -m gleamx.recipes.X`` and ``accelerate launch [...] X.py | -m MODULE``."""
    words = [_clean(w) for w in c.words]
    launcher: list[str] = []
    if words[0] in ("python", "python3"):
        rest = words[1:]
    elif words[:2] == ["accelerate", "launch"]:
        rest = words[2:]
        i = 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] != "-m":
            action = accelerate_options().get(rest[i].partition("=")[0])
            takes = action is not None and action.nargs != 0 and "=" not in rest[i]
            i += 2 if takes else 1
        launcher, rest = rest[:i], rest[i:]
    else:
        return None
    if not rest or rest[0] == "...":
        return None  # a bare `accelerate launch`
    if rest[0] == "-m":
        module = rest[1] if len(rest) > 1 else ""
        if not module.startswith("gleamx.recipes."):
            return None  # python -m pytest / venv / pip
        return module, module, rest[2:], launcher
    if not rest[0].endswith(".py"):
        return None
    script = rest[0]
    parts = Path(script).parts
    module = f"gleamx.recipes.{Path(script).stem}" if parts[0] in ("recipes", "gleamx") and "recipes" in parts else None
    return script, module, rest[1:], launcher


# --- the checks: each returns one line per problem in ``pages`` --------------------------------------------------


def command_problems(pages: list[Path]) -> tuple[list[str], set[str]]:
    """A ``gleamx`` command that does not exist, or a flag, choice or number it does not take; and which commands
    were checked."""
    from gleamx.cli.main import COMMANDS, _every_command

    problems, checked = [], set()
    for c in (c for p in pages for c in docs.commands(p)):
        found = gleamx_command(c)
        if found is None:
            continue
        names, rest = found
        for name in names:
            if name not in COMMANDS:
                problems.append(f"{c}: `gleamx {name}` is no command ({_every_command()})")
                continue
            checked.add(name)
            problems += check_flags(f"{c} (gleamx {name})", rest, gleamx_options(name))
    return problems, checked


def recipe_problems(pages: list[Path]) -> tuple[list[str], int]:
    """A recipe or benchmark script that does not exist, a flag its parser (or ``accelerate launch``'s) does not
    take, an accelerate ``--config_file`` that is no file; and how many runs were checked."""
    problems, runs = [], 0
    for c in (c for p in pages for c in docs.commands(p)):
        run = recipe_run(c)
        if run is None:
            continue
        script, module, words, launcher = run
        runs += 1
        problems += check_flags(f"{c} (accelerate launch)", launcher, accelerate_options())
        for flag, value in flags(launcher):
            if flag in ("--config_file", "--config-file") and value and not docs.is_placeholder(value) \
                    and not (ROOT / value).is_file():
                problems.append(f"{c}: accelerate config {value} does not exist")
        if script.endswith(".py") and not (ROOT / script).is_file():
            problems.append(f"{c}: {script} does not exist")
            continue
        if module is not None:
            problems += check_flags(f"{c} ({script})", words, recipe_options(module))
    return problems, runs


def _config_kind(c: DocCommand) -> tuple[str | None, list[str]] | None:
    """``(kind, words after the command)`` of a line whose ``--config`` is a recipe or eval config: kind is which
    packaged recipes it may name (``sft``, ``grpo``, ``retrieval``, ``eval``), ``None`` for a YAML file only."""
    from gleamx.cli.main import COMMANDS

    found = gleamx_command(c)
    if found is not None:
        names, rest = found
        if len(names) != 1 or names[0] not in COMMANDS:
            return None
        cmd = COMMANDS[names[0]]
        return cmd.recipes or (recipe_module_of(names[0]).rsplit(".", 1)[1] if cmd.config is None else None), rest
    run = recipe_run(c)
    if run is None or run[1] is None or (run[0].endswith(".py") and not (ROOT / run[0]).is_file()):
        return None
    return run[1].rsplit(".", 1)[1], run[2]


def config_problems(pages: list[Path]) -> tuple[list[str], int]:
    """``--config`` of a recipe: a file (from the repo root) or a packaged recipe of the command's kind, in today's
    spelling (an old ``gleamc`` name resolves with a FutureWarning, a problem here); ``--accelerate_config``: a file
    or a packaged accelerate config. Run from the repo root."""
    from gleamx import accelerate_configs, recipes
    from gleamx.errors import GleamConfigError

    problems, resolved = [], 0
    for c in (c for p in pages for c in docs.commands(p)):
        found = _config_kind(c)
        if found is None:
            continue
        kind, words = found
        for flag, value in flags(words):
            if value is None or docs.is_placeholder(value):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", FutureWarning)
                    if flag == "--config":
                        resolved += 1
                        if kind is None and not Path(value).is_file():
                            problems.append(f"{c}: --config {value}: no such file")
                        elif kind is not None:
                            recipes.resolve_config(["--config", value], kind)
                    elif flag in ("--accelerate_config", "--accelerate-config"):
                        resolved += 1
                        accelerate_configs.resolve(value)
            except (GleamConfigError, FutureWarning) as e:
                problems.append(f"{c}: {e}")
    return problems, resolved


def path_problems(pages: list[Path]) -> tuple[list[str], int]:
    """A repo path (``recipes/...``, ``benchmark/...``, ``docs/...``, a glob) that names nothing."""
    problems, n = [], 0
    for page in pages:
        for line, rel in docs.paths(page):
            n += 1
            there = list(ROOT.glob(rel)) if "*" in rel else (ROOT / rel).exists()
            if not there:
                problems.append(f"{docs.shown(page)}:{line}: {rel} does not exist")
    return problems, n


def api_problems(pages: list[Path]) -> tuple[list[str], int]:
    """A ``gleamx.x.y`` name that neither imports as a module nor is an attribute of one."""
    problems, n = [], 0
    for page in pages:
        for line, name in docs.api_names(page):
            n += 1
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ModuleNotFoundError:
                    continue
                try:
                    for attr in parts[i:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    problems.append(f"{docs.shown(page)}:{line}: {name}: no {attr} in {'.'.join(parts[:i])}")
                break
    return problems, n


def link_problems(pages: list[Path]) -> list[str]:
    """A relative link or image whose file, or whose ``#anchor`` in a markdown file, is not there."""
    problems = []
    for page in pages:
        for line, target in docs.links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{docs.shown(page)}:{line}: {target}"
            if not dest.exists():
                problems.append(f"{where}: {file} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in docs.headings(dest):
                problems.append(f"{where}: no heading #{anchor} in {docs.shown(dest)}")
    return problems


def extra_problems(pages: list[Path]) -> tuple[list[str], int]:
    """A ``pip install`` of ``gleamx[X]`` or ``.[X]`` whose extra X pyproject.toml does not define."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                 ["optional-dependencies"])
    problems, n = [], 0
    for c in (c for p in pages for c in docs.commands(p)):
        if c.words[:2] != ("pip", "install"):
            continue
        for w in c.words[2:]:
            m = re.fullmatch(r"(?:gleamx|\.)\[([\w,-]+)\]", w)
            if m:
                n += 1
                problems += [f"{c}: no extra {e!r} in pyproject.toml" for e in m.group(1).split(",")
                             if e not in extras]
    return problems, n


# --- the tests ----------------------------------------------------------------------------------------------------

PAGES = docs.doc_files()


def test_readme_fits_on_a_few_screens():
    lines = docs.text(docs.README).splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_every_doc_page_is_linked_from_the_readme():
    linked = {(ROOT / target.split("#")[0]).resolve() for _, target in docs.links(docs.README)}
    pages = [p for p in PAGES if p != docs.README]
    assert len(pages) >= 9, [p.name for p in pages]
    missing = [docs.shown(p) for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md links no page of: {missing}"


def test_every_gleamx_command_in_the_docs_exists_and_takes_its_flags():
    from gleamx.cli.main import COMMANDS

    problems, checked = command_problems(PAGES)
    assert not problems, "\n".join(problems)
    assert checked == set(COMMANDS), f"commands no doc shows: {sorted(set(COMMANDS) - checked)}"


def test_every_recipe_script_exists_and_takes_its_flags():
    problems, runs = recipe_problems(PAGES)
    assert runs >= 8 and not problems, "\n".join(problems)


def test_every_config_a_doc_names_resolves(monkeypatch):
    monkeypatch.chdir(ROOT)
    problems, resolved = config_problems(PAGES)
    assert resolved >= 10 and not problems, "\n".join(problems)


def test_every_repo_path_a_doc_names_exists():
    problems, n = path_problems(PAGES)
    assert n > 50 and not problems, "\n".join(problems)


def test_every_python_name_a_doc_names_exists():
    problems, n = api_problems(PAGES)
    assert n >= 4 and not problems, "\n".join(problems)


def test_every_relative_link_resolves():
    problems = link_problems(PAGES)
    assert not problems, "\n".join(problems)


def test_every_extra_a_doc_installs_exists():
    problems, n = extra_problems(PAGES)
    assert n >= 3 and not problems, "\n".join(problems)


def test_docs_call_the_retrieval_encoder_by_its_name():
    """The retrieval model is "the retrieval encoder" (gleamx.retrieval, `gleamx retrieval`, recipes/retrieval/);
    the old gleamc spellings still work as aliases, but no page teaches them."""
    old = [f"{docs.shown(page)}:{n}: {line.strip()}" for page in PAGES
           for n, line in enumerate(docs.text(page).splitlines(), start=1) if re.search(r"gleamc", line, re.I)]
    assert not old, "\n".join(old)


def test_the_layer_picture_is_the_layers_test():
    """docs/architecture.md's table lists tests/test_layers.py's LAYERS, bottom to top, one row per layer."""
    from test_layers import LAYERS

    rows = []
    for line in docs.text(docs.DOCS / "architecture.md").splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            rows.append((int(m.group(1)), set(re.findall(r"`([\w.]+)`", m.group(2)))))
    assert [n for n, _ in rows] == list(range(len(LAYERS))), rows
    for (n, units), layer in zip(rows, LAYERS):
        assert units == layer, f"layer {n}: docs/architecture.md lists {sorted(units)}, LAYERS {sorted(layer)}"


BROKEN = """# Broken

```bash
gleamx data synth --out data/x --no-such-flag 3 --n 4
gleamx data nosuch --out data/x
gleamx data synth --difficulty extreme
gleamx sft --config tiny/no_such_recipe --learning_rate 1e-4 --no_such_trl_flag 1
accelerate launch --config_file accelerate_configs/zero9.yaml recipes/sft.py --bogus 1
python recipes/nope.py --config recipes/tiny/sft_lora.yaml
gleamx retrieval train --config gleamc/tiny
pip install "gleamx[nosuch]"
```

See `recipes/nowhere.yaml`, `gleamx.data.NO_SUCH_NAME`, [a page](missing.md) and [a part](#nowhere).
"""


def test_each_check_fails_on_a_wrong_page(tmp_path, monkeypatch):
    """Every check above reports what its name says, on a page that gets each thing wrong once."""
    monkeypatch.chdir(ROOT)
    page = tmp_path / "broken.md"
    page.write_text(BROKEN, encoding="utf-8")

    def one_each(problems: list[str], *expected: str) -> None:
        assert len(problems) == len(expected), "\n".join(problems)
        for p, e in zip(problems, expected):
            assert e in p, (e, p)

    one_each(command_problems([page])[0], "--no-such-flag is not an option", "`gleamx data nosuch` is no command",
             "--difficulty extreme: not one of", "--no_such_trl_flag is not an option")
    one_each(recipe_problems([page])[0], "accelerate config accelerate_configs/zero9.yaml does not exist",
             "--bogus is not an option", "recipes/nope.py does not exist")
    one_each(config_problems([page])[0], "--config tiny/no_such_recipe: neither a recipe file",
             "gleamc/tiny is now retrieval/tiny")
    one_each(extra_problems([page])[0], "no extra 'nosuch'")
    one_each(path_problems([page])[0], "accelerate_configs/zero9.yaml does not exist", "recipes/nope.py does not exist",
             "recipes/nowhere.yaml does not exist")
    one_each(api_problems([page])[0], "gleamx.data.NO_SUCH_NAME: no NO_SUCH_NAME in gleamx.data")
    one_each(link_problems([page]), "missing.md does not exist", "no heading #nowhere")


# --- the help a command prints -------------------------------------------------------------------------------


def _examples() -> dict[str, tuple[str, ...]]:
    from gleamx import recipes
    from gleamx.cli.main import EXAMPLES

    kind = {"sft": "sft", "grpo": "grpo", "retrieval train": "retrieval"}
    return {**EXAMPLES, **{name: recipes.EXAMPLES[k] for name, k in kind.items()}}


def test_every_command_has_examples_that_its_parser_takes():
    """1-3 examples per command, each naming its own command, every flag one the command takes (checked as the
    docs' commands are)."""
    import shlex

    from gleamx.cli.main import COMMANDS

    examples = _examples()
    assert set(examples) == set(COMMANDS), set(COMMANDS) ^ set(examples)
    problems = []
    for name, lines in examples.items():
        assert 1 <= len(lines) <= 3, name
        for line in lines:
            words = shlex.split(line)
            assert " ".join(words[1:1 + len(name.split())]) == name, line
            problems += check_flags(f"gleamx {name} example", words[1 + len(name.split()):], gleamx_options(name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["data synth", "predict", "eval", "sft", "retrieval train"])
def test_help_starts_with_examples_and_says_required(name, capsys):
    """``gleamx NAME --help``: the usage line, then the examples; a required option says "required", and no option
    claims a default of None; a recipe's own options are listed before TRL's."""
    from gleamx.cli.main import main

    with pytest.raises(SystemExit):
        main([*name.split(), "--help"])
    text = capsys.readouterr().out
    head = text.split("\n\n")
    assert head[0].startswith(f"usage: gleamx {name}") and head[1].startswith("examples:\n  gleamx " + name), text[:800]
    assert "(default: None)" not in text
    if name in ("data synth", "predict"):
        assert re.search(r"--(out|query) \S+\s+.*\(required\)", text, re.S)
    if name == "sft":
        assert text.index("gleamx options (GleamScriptArguments)") < text.index("TRL options (SFTConfig)") \
            < text.index("TRL options (ModelConfig)")


# --- the folders the commands write and read ----------------------------------------------------------------------

OUTPUT_FLAGS = ("--out", "--output", "--output_dir", "--output-dir", "--export-space", "--export_space")
INPUT_FLAGS = ("--data", "--adapter", "--encoder", "--retrieval", "--gallery", "--annotations", "--dataset_name",
               "--dataset-name", "--eval_data", "--eval-data", "--revisions")
POSITIONAL_INPUT = ("data validate", "data convert", "data push", "push")  # their first word after the command
BROUGHT = {"raw/University-Release"}  # downloads the reader brings: no command makes them


def _norm(path: str) -> str:
    import posixpath

    return posixpath.normpath(path.rstrip("/"))


def _yaml_output_dir(config: str, kind: str | None) -> str | None:
    """The ``output_dir`` of recipe ``config`` (a file, or a packaged recipe of ``kind``), or None."""
    import yaml

    from gleamx import recipes

    try:
        path = Path(recipes.resolve_config(["--config", config], kind)[1]) if kind else Path(config)
        data = yaml.safe_load((path if path.is_absolute() else ROOT / path).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001  (test_every_config_a_doc_names_resolves reports it)
        return None
    return data.get("output_dir") if isinstance(data, dict) else None


def written_folders(c: DocCommand) -> list[str]:
    """The folders (or files) ``c`` writes: its ``--out``/``--output``/``--output_dir``/``--export-space``, else, for
    a recipe run with ``--config`` (``gleamx sft|grpo|retrieval train``, ``python``/``accelerate launch`` of a recipe
    script, ``sbatch`` of a recipe's SLURM script), the recipe's own ``output_dir``."""
    words = [_clean(w) for w in c.words]
    if words[0] == "sbatch":  # sbatch [opts] recipes/slurm/X.sbatch RECIPE.yaml ACCELERATE.yaml [recipe flags]
        i = next((i for i, w in enumerate(words) if w.endswith(".sbatch")), None)
        if i is None or i + 1 >= len(words):
            return []
        given = [v for f, v in flags(words[i + 1:]) if f in OUTPUT_FLAGS and v]
        out = given or [_yaml_output_dir(words[i + 1], None)]
        return [_norm(o) for o in out if o and not docs.is_placeholder(o)]
    given = [v for f, v in flags(words) if f in OUTPUT_FLAGS and v and not docs.is_placeholder(v)]
    if given:
        return [_norm(v) for v in given]
    found = _config_kind(c) if (gleamx_command(c) or recipe_run(c)) else None
    if found is None:
        return []
    kind, rest = found
    config = next((v for f, v in flags(rest) if f == "--config" and v), None)
    if config is None or docs.is_placeholder(config) or kind not in ("sft", "grpo", "retrieval", None):
        return []
    out = _yaml_output_dir(config, kind)
    return [_norm(out)] if out else []


def read_folders(c: DocCommand) -> list[str]:
    """The local folders or files ``c`` reads that some command should have made: ``--data``, ``--adapter``,
    ``--encoder``, ``--retrieval``, ``--gallery``, ... and the first argument of ``data validate|convert|push`` and
    ``push``."""
    found = gleamx_command(c)
    if found is None:
        return []
    names, rest = found
    read = [v for f, v in flags(rest) if f in INPUT_FLAGS and v]
    if names and names[0] in POSITIONAL_INPUT and rest and not rest[0].startswith("-"):
        read.append(rest[0])
    return [_norm(v) for v in read if not docs.is_placeholder(v) and "://" not in v]


def folder_problems(pages: list[Path]) -> tuple[list[str], int]:
    """Two sections (headings) of the docs writing the same folder, and a command reading a local folder that no
    earlier command (README first, then the pages in README's table order) makes; and how many writes were
    checked. A name no command writes under whose first part is no folder any command writes is a Hub id
    (``you/gleamx-u1652``)."""
    writers: dict[str, tuple[str, DocCommand]] = {}
    problems, n = [], 0
    cmds = [c for p in pages for c in docs.commands(p) if c.fenced]
    roots = {w.split("/", 1)[0] for c in cmds for w in written_folders(c)}
    made: set[str] = set(BROUGHT)
    for c in cmds:
        for r in read_folders(c):
            parts = r.split("/")
            local = parts[0] in roots or len(parts) != 2 or r.startswith((".", "~"))
            if local and not any("/".join(parts[:i]) in made for i in range(len(parts), 0, -1)):
                problems.append(f"{c}: reads {r}, which no earlier command of the docs makes")
        section = docs.section_of(c.file, c.line)
        for w in written_folders(c):
            n += 1
            made.add(w)
            first = writers.setdefault(w, (section, c))
            if first[0] != section:
                problems.append(f"{c}: writes {w}, as {first[1].where} in another section ({first[0]}) does")
    return problems, n


def test_no_two_sections_write_the_same_folder_and_every_folder_read_is_made_first(monkeypatch):
    """Following the docs top to bottom (README, then its table's pages), no section overwrites another section's
    output folder (``--out``, ``--output``, ``--output_dir``, a ``--config`` recipe's own ``output_dir``), and every
    local folder a command reads was made by an earlier command (or is a download the reader brings: ``BROUGHT``)."""
    monkeypatch.chdir(ROOT)
    problems, n = folder_problems(docs.walk_order())
    assert n >= 30, n
    assert not problems, "\n".join(problems)


def test_the_folder_check_fails_on_a_wrong_page(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    page = tmp_path / "folders.md"
    page.write_text("# A\n\n```bash\ngleamx data synth --out data/x --n 10\ngleamx sft --config tiny/sft_lora\n```\n\n"
                    "## B\n\n```bash\ngleamx data synth --out data/x --n 20\n"
                    "python recipes/sft.py --config recipes/tiny/sft_lora.yaml\n"
                    "gleamx data validate data/never\ngleamx eval --model m --adapter outputs/tiny-sft-lora --data "
                    "you/hub-set --output eval/y\n```\n", encoding="utf-8")
    problems, _ = folder_problems([page])
    assert len(problems) == 3, "\n".join(problems)
    assert "writes data/x" in problems[0] and "writes outputs/tiny-sft-lora" in problems[1], problems
    assert "reads data/never" in problems[2], problems
