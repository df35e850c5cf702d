"""The suite's own guard: under GLEAMX_STRICT_SKIPS=1 (as .ci/run sets it) a skip whose reason is not in
``ALLOWED_SKIP_REASONS`` fails the run, whether it is raised in a test or while a module is collected."""

from __future__ import annotations

from pathlib import Path

import pytest

import doc_commands

CONFTEST = Path(__file__).with_name("conftest.py")

MODULES = {
    "test_gone": 'import pytest\npytest.importorskip("gleamx_no_such_module")\n\ndef test_never_runs():\n    pass\n',
    "test_here": "def test_runs():\n    pass\n",
}


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    return pytester


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadgroup"]], ids=["one-process", "xdist"])
def test_a_skip_at_collection_fails_a_strict_run(inner: pytest.Pytester, monkeypatch, workers) -> None:
    inner.makepyfile(**MODULES)
    monkeypatch.setenv("GLEAMX_STRICT_SKIPS", "1")
    strict = inner.runpytest_subprocess(*workers)
    assert strict.ret == 1, strict.stdout.str()
    strict.stdout.fnmatch_lines(["*DISALLOWED SKIP test_gone.py*gleamx_no_such_module*"])
    monkeypatch.delenv("GLEAMX_STRICT_SKIPS")
    lenient = inner.runpytest_subprocess(*workers)
    assert lenient.ret == 0 and "1 passed, 1 skipped" in lenient.stdout.str()


def test_a_skip_in_a_test_fails_unless_its_reason_is_allowed(inner: pytest.Pytester, monkeypatch) -> None:
    inner.makepyfile(test_skips='import pytest\n\ndef test_other():\n    pytest.skip("no chromium here")\n')
    monkeypatch.setenv("GLEAMX_STRICT_SKIPS", "1")
    assert inner.runpytest_subprocess().ret == 1
    inner.makepyfile(test_skips='import pytest\n\ndef test_gpu():\n    pytest.skip("a GPU is visible: the GPU mode")\n')
    assert inner.runpytest_subprocess().ret == 0


def test_ci_runs_the_readme_test_command_strictly() -> None:
    """.ci/run ends with the README's test command, verbatim, under GLEAMX_STRICT_SKIPS=1, and pytest-xdist is
    installed by the dev extra that .ci/run installs (the addopts need it)."""
    import re
    import tomllib

    root = CONFTEST.parents[1]
    readme = doc_commands.text(doc_commands.README)
    command = re.search(r"Run the tests:\n\n```bash\n\. \.venv/bin/activate && (.+)\n```", readme).group(1)
    ci = [line for line in (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == command == "python -m pytest -q"
    assert "export GLEAMX_STRICT_SKIPS=1" in ci and 'python -m pip install -e ".[dev]"' in ci
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "-n auto" in project["tool"]["pytest"]["ini_options"]["addopts"]
    assert any(d.startswith("pytest-xdist") for d in project["project"]["optional-dependencies"]["dev"])


def test_every_pytest_command_in_the_docs_selects_declared_markers() -> None:
    """A pytest line in the README or docs/*.md (`python -m pytest -q -m "not slow"`) selects with `-m` only the
    markers pyproject.toml declares, and `-n` takes a worker count; the README's test command is among them."""
    import re
    import tomllib

    root = CONFTEST.parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {m.split(":")[0].strip() for m in project["tool"]["pytest"]["ini_options"]["markers"]}
    shown, problems = set(), []
    for c in doc_commands.all_commands():
        words = list(c.words)
        if words[:3] == ["python", "-m", "pytest"]:
            words = words[3:]
        elif words[:1] == ["pytest"]:
            words = words[1:]
        else:
            continue
        shown.add(" ".join(c.words))
        for flag, value in zip(words, words[1:]):
            if flag == "-m":
                unknown = set(re.findall(r"\w+", value)) - {"not", "and", "or"} - declared
                problems += [f"{c}: -m {value!r}: marker {m!r} is not declared in pyproject.toml" for m in unknown]
            elif flag == "-n" and not (value.isdigit() or value in ("auto", "logical")):
                problems.append(f"{c}: -n {value!r}: expected a number of workers")
    assert not problems, "\n".join(problems)
    assert {"python -m pytest -q", "python -m pytest -q -m not slow", "python -m pytest -q -m slow"} <= shown, shown
