"""The suite's own guard: under GLEAMX_STRICT_SKIPS=1 (as .ci/run sets it) a skip whose reason is not in
``ALLOWED_SKIP_REASONS`` fails the run, whether it is raised in a test or while a module is collected."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = re.search(r"Run the tests:\n\n```bash\n\. \.venv/bin/activate && (.+)\n```", readme).group(1)
    ci = [line for line in (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == command == "python -m pytest -q"
    assert "export GLEAMX_STRICT_SKIPS=1" in ci and 'python -m pip install -e ".[dev]"' in ci
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "-n auto" in project["tool"]["pytest"]["ini_options"]["addopts"]
    assert any(d.startswith("pytest-xdist") for d in project["project"]["optional-dependencies"]["dev"])
