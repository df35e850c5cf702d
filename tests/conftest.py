"""Shared fixtures. Each area appends its own, prefixed by area name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

pytest_plugins = ["pytester"]  # tests/test_strict_skips.py runs the suite's own guard on a tiny inner suite

# --- one thread per xdist worker -----------------------------------------------------------------
# The suite runs as `pytest -n auto` (pyproject's addopts): N workers on N cores. Each worker, and every
# process a test starts from it (accelerate jobs, the wheel install), gets one BLAS/OpenMP thread, so
# workers never fight over cores. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- CI cannot go quietly green -----------------------------------------------------------------
# With GLEAMX_STRICT_SKIPS=1 (.ci/run sets it) a test that skips for a reason not listed here fails
# the run: a missing core dependency, Chromium or g++ must not turn into a green "skipped".
ALLOWED_SKIP_REASONS: tuple[str, ...] = (
    "a GPU is visible",  # tests/test_bench_gpu.py: the CPU twin does not run where the GPU benchmark would
)
_disallowed_skips: list[tuple[str, str]] = []


def _strict_skips() -> bool:
    return os.environ.get("GLEAMX_STRICT_SKIPS") == "1"


def _hold_to_allow_list(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and _strict_skips():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
            _disallowed_skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _hold_to_allow_list(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module-level skip (``pytest.importorskip`` at import, ``pytestmark = skip``) never reaches
    # ``pytest_runtest_logreport``: its whole file would vanish from a strict run without this.
    _hold_to_allow_list(report)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` a module's tests go to one worker, so its module-scoped fixtures (a trained
    run, a served app) are built once; a test marked ``xdist_group("name")`` joins that group instead, which
    lets two modules share one session-scoped fixture."""
    for item in items:
        if not any(m.name == "xdist_group" for m in item.iter_markers()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    for nodeid, reason in _disallowed_skips:
        terminalreporter.write_line(f"DISALLOWED SKIP {nodeid}: {reason}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _disallowed_skips and session.exitstatus == 0:
        session.exitstatus = 1  # GLEAMX_STRICT_SKIPS: skips not in ALLOWED_SKIP_REASONS fail the run


@pytest.fixture(autouse=True, scope="session")
def _private_gleamx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Caches (retrieval embeddings) go to a temp dir of this session, never the user's ~/.cache/gleamx."""
    old = os.environ.get("GLEAMX_CACHE")
    os.environ["GLEAMX_CACHE"] = str(tmp_path_factory.mktemp("gleamx_cache"))
    yield
    if old is None:
        os.environ.pop("GLEAMX_CACHE", None)
    else:
        os.environ["GLEAMX_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _private_datasets_cache(tmp_path_factory: pytest.TempPathFactory):
    """``datasets``' Arrow caches of the local folders the tests load (one per folder and content) go to a temp dir
    of this session, never the user's ~/.cache/huggingface/datasets (nor fill CI's disk across runs)."""
    import datasets

    old_env, old_config = os.environ.get("HF_DATASETS_CACHE"), datasets.config.HF_DATASETS_CACHE
    path = tmp_path_factory.mktemp("hf_datasets_cache")
    os.environ["HF_DATASETS_CACHE"] = str(path)  # subprocesses (accelerate launch) read it at import
    datasets.config.HF_DATASETS_CACHE = path
    yield
    datasets.config.HF_DATASETS_CACHE = old_config
    if old_env is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = old_env


@pytest.fixture(autouse=True, scope="session")
def _short_parquet_reader_pause():
    """``datasets`` sleeps ``SLEEP_TIME_ON_THREADS_SHUTDOWN`` (5 s) each time a stream stops reading Parquet shards
    through its threads, against a crash of Arrow threads still running at exit (apache/arrow#45214, where 100 ms
    was reported to be enough). The stream tests stop many readers on purpose (resumes, the part each process
    reads): 0.5 s each here, in this process only (a launched run keeps datasets' own pause)."""
    import datasets

    old = datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN
    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0.5
    yield
    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = old


@pytest.fixture(autouse=True)
def _no_mixed_precision_left_behind():
    """accelerate keeps one process-wide state: a test that trained in bf16 or fp16 in-process leaves it there, and
    the next test of that xdist worker that builds a full-precision Accelerator (GLEAM-C training) is refused
    ("AcceleratorState has already been initialized"), a failure that depends on which tests share a worker."""
    import sys

    yield
    state = sys.modules.get("accelerate.state")
    if state is not None and state.AcceleratorState._shared_state.get("_mixed_precision", "no") != "no":
        state.AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True, scope="session")
def _session_torch_extensions(tmp_path_factory: pytest.TempPathFactory):
    """DeepSpeed's JIT-built CPU op (``deepspeed_shm_comm``) goes to one folder of this test session, shared by its
    xdist workers and every process they launch: built once per session (torch's lock makes a second builder
    wait), never read from or written to the user's ``~/.cache/torch_extensions``."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "torch_extensions"
    shared.mkdir(exist_ok=True)
    old = os.environ.get("TORCH_EXTENSIONS_DIR")
    os.environ["TORCH_EXTENSIONS_DIR"] = str(shared)
    yield
    if old is None:
        os.environ.pop("TORCH_EXTENSIONS_DIR", None)
    else:
        os.environ["TORCH_EXTENSIONS_DIR"] = old


def _write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (48, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def data_small_jsonl(tmp_path: Path) -> Path:
    """A valid 4-sample gleamx JSONL (bilingual, both labels, two views) with real PNGs."""
    for name, colour in {"q1": (200, 30, 30), "s1": (30, 200, 30), "q2": (30, 30, 200), "s2": (90, 90, 90)}.items():
        _write_image(tmp_path / "images" / f"{name}.png", colour)
    rows = [
        {"id": "a", "query_image": "images/q1.png", "satellite_image": "images/s1.png", "query_view": "uav",
         "label": True, "explanation": {"en": "A red roof beside the junction.\nAnswer: Yes",
                                        "zh": "路口旁有一座红色屋顶的建筑。\n结论：是"},
         "source": "test", "split": "train", "meta": {"location_id": "L1"}},
        {"id": "b", "query_image": "images/q1.png", "satellite_image": "images/s2.png", "query_view": "uav",
         "label": False, "explanation": {"en": "The satellite tile has no red roof.\nAnswer: No",
                                         "zh": "卫星图中没有红色屋顶。\n结论：否"},
         "source": "test", "split": "train", "meta": {"location_id": "L1"}},
        {"id": "c", "query_image": "images/q2.png", "satellite_image": "images/s2.png", "query_view": "ground",
         "label": True, "explanation": {"en": "Same grey blocks."}, "source": "test", "split": "test"},
        {"id": "d", "query_image": "images/q2.png", "satellite_image": "images/s1.png", "query_view": "street_map",
         "label": False, "source": "test", "split": "test"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --- generated data, built once ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory):
    """``get(n, seed=0, image_size=128, difficulty="medium") -> Path``: a generated GLEAM-X dataset (splits and
    retrieval layout), built once per session (per xdist worker) for each argument set.

    Shared between modules: read it, never change it; a test that edits files copies it first
    (``shutil.copytree``).
    """
    from gleamx.synth import synthesize

    built: dict[tuple[int, int, int, str], Path] = {}

    def get(n: int, seed: int = 0, image_size: int = 128, difficulty: str = "medium") -> Path:
        key = (n, seed, image_size, difficulty)
        if key not in built:
            out = tmp_path_factory.mktemp(f"synth_{n}_{seed}_{image_size}_{difficulty}") / "data"
            synthesize(out, n=n, seed=seed, image_size=image_size, difficulty=difficulty)
            built[key] = out
        return built[key]

    return get


# --- models_ fixtures (gleamx.models) ----------------------------------------------------------


@pytest.fixture(scope="session")
def models_tiny_dir(tmp_path_factory: pytest.TempPathFactory):
    """``get(arch, tokenizer="bpe", seed=0) -> Path``: a tiny saved model, built once per session.

    Skips the calling test if the installed transformers lacks ``arch``.
    """
    from gleamx.models import available_archs, build_tiny_model

    built: dict[tuple[str, str, int], Path] = {}

    def get(arch: str, tokenizer: str = "bpe", seed: int = 0) -> Path:
        if arch not in available_archs():
            pytest.skip(f"transformers lacks {arch}")
        key = (arch, tokenizer, seed)
        if key not in built:
            out = tmp_path_factory.mktemp(f"models_tiny_{arch}_{tokenizer}_{seed}")
            built[key] = build_tiny_model(arch, out, tokenizer=tokenizer, seed=seed)
        return built[key]

    return get


@pytest.fixture(scope="session")
def models_real_tiny_dir(tmp_path_factory: pytest.TempPathFactory):
    """``get(arch) -> Path``: a tiny random model built from the real checkpoint files of ``arch``
    (``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``), built once per session."""
    from gleamx.models import available_archs
    from gleamx.models.real_tiny import build_real_tiny_model

    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in available_archs():
            pytest.skip(f"transformers lacks {arch}")
        if arch not in built:
            built[arch] = build_real_tiny_model(arch, tmp_path_factory.mktemp(f"models_real_{arch}"))
        return built[arch]

    return get


# --- the CLI, in this process ------------------------------------------------------------------------


@pytest.fixture
def gleamx_cli(capsys: pytest.CaptureFixture[str]):
    """``run(*args, entry=gleamx.cli.main.main) -> CliResult``: a command line run in this process, its output
    captured. No cold interpreter per call (torch alone takes seconds to import); ``tests/test_cli.py`` keeps
    one real subprocess per installed entry point. ``entry=script_entry(path)`` runs a recipe script."""
    from cli_run import run_captured

    return lambda *args, entry=None: run_captured(capsys, args, entry)


# --- a tiny LoRA run, trained once ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_lora_run(tmp_path_factory: pytest.TempPathFactory, models_tiny_dir):
    """``get(data, *overrides) -> Path``: the packaged tiny SFT recipe (``recipes/tiny/sft_lora.yaml``, parsed
    as ``recipes/sft.py`` parses it) on the tiny Qwen2.5-VL model and ``data``, ``--save_strategy no``, with
    ``overrides`` (flags) on top; each distinct run is trained once per session. Read it, never change it."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx import recipes
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe
    from gleamx.train.sft import run_sft

    built: dict[tuple[str, ...], Path] = {}

    def get(data: Path, *overrides: str) -> Path:
        key = (str(data), *overrides)
        if key not in built:
            out = tmp_path_factory.mktemp("tiny_lora_run") / "sft"
            args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
                "--config", str(recipes.path("tiny/sft_lora")), "--model_name_or_path",
                str(models_tiny_dir("qwen2_5_vl")), "--dataset_name", str(data), "--output_dir", str(out),
                "--save_strategy", "no", *overrides])
            built[key] = run_sft(*args)
        return built[key]

    return get


# --- the demo, run once: the demo test reads it, the app tests serve it ---------------------------------


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``(workdir, stdout)``: ``gleamx demo`` run once into ``workdir/demo-qwen2_5_vl-s0``, the folder that
    ``gleamx app --workdir workdir`` reuses as its tiny model, adapter, encoder and examples. Tests using it are
    marked ``xdist_group("demo")`` so one worker runs it."""
    import contextlib
    import io

    from gleamx.cli.main import main

    work = tmp_path_factory.mktemp("demo_work")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--out", str(work / "demo-qwen2_5_vl-s0")])
    assert code == 0, out.getvalue()[-3000:]
    return work, out.getvalue()
