"""Packaging: the recipes ship inside the package (gleamx/recipes, linked as recipes/ in a checkout), a wheel
install trains without a checkout (``gleamx sft --config tiny/sft_lora``), and the paths of the README and docs/*.md
stay true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gleamx import recipes
from gleamx.errors import GleamConfigError

from cli_run import script_entry
from doc_commands import commands, doc_files, is_placeholder, paths, shown

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "gleamx" / "recipes"


def test_recipes_found_through_the_package_helper():
    assert recipes.path("tiny/sft_lora") == recipes.path("tiny/sft_lora.yaml") == recipes.ROOT / "tiny" / "sft_lora.yaml"
    assert recipes.path("tiny/sft_lora").is_file() and recipes.path("sft.py").is_file()
    assert recipes.path("retrieval.py").is_file() and recipes.path("recipes/retrieval/tiny.yaml").is_file()
    assert {"tiny/sft_lora", "qwen2.5-vl-3b/sft_lora", "qwen2.5-vl-3b/sft_qlora"} <= set(recipes.names("sft"))
    assert recipes.names("retrieval") == ["retrieval/convnext_base", "retrieval/stream_tiny", "retrieval/tiny",
                                          "retrieval/two_phase_convnext_base", "retrieval/two_phase_tiny"]
    assert recipes.names("eval") == ["eval/en_label", "eval/zh_explain"]
    assert recipes.names("ablation") == ["qwen2.5-vl-3b/ablation", "tiny/ablation"]
    assert sorted(recipes.names("sft") + recipes.names("grpo") + recipes.names("retrieval") + recipes.names("eval")
                  + recipes.names("ablation")) == recipes.names()
    assert "tiny/grpo" in recipes.names("grpo") and not set(recipes.names("grpo")) & set(recipes.names("sft"))
    from gleamx.demo import RECIPE

    assert RECIPE == recipes.path("tiny/sft_lora")
    with pytest.raises(GleamConfigError, match="nope: no packaged recipe.*tiny/sft_lora"):
        recipes.path("nope")


def test_doc_recipe_paths_exist_from_the_repo_root():
    """recipes/ is a relative link to gleamx/recipes, so every recipes/... path the README and docs/*.md name works."""
    assert (ROOT / "recipes").is_symlink() and os.readlink(ROOT / "recipes") == "gleamx/recipes"
    named = {(page, rel) for page in doc_files() for _, rel in paths(page)}
    recipe_files = {(page, rel) for page, rel in named if re.fullmatch(r"recipes/[\w./-]+\.(?:py|yaml|sh|sbatch)", rel)}
    assert {"recipes/sft.py", "recipes/retrieval.py", "recipes/tiny/sft_lora.yaml",
            "recipes/qwen2.5-vl-3b/sft_lora.yaml"} <= {rel for _, rel in recipe_files}
    for page, rel in sorted(recipe_files):
        assert (ROOT / rel).is_file(), f"{shown(page)} names {rel}, which does not exist"
    # accelerate_configs/ likewise links to the packaged configs (gleamx/accelerate_configs, in the wheel)
    assert os.readlink(ROOT / "accelerate_configs") == "gleamx/accelerate_configs"
    configs = {(page, rel) for page, rel in named if re.fullmatch(r"accelerate_configs/[\w.-]+\.yaml", rel)}
    assert "accelerate_configs/zero2.yaml" in {rel for _, rel in configs}
    for page, rel in sorted(configs):
        assert (ROOT / rel).is_file(), f"{shown(page)} names {rel}, which does not exist"


def test_package_data_covers_every_recipe():
    """Every YAML under gleamx/recipes matches a package-data glob, so the wheel carries it."""
    import tomllib  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = cfg["tool"]["setuptools"]["package-data"]["gleamx"]
    shipped = {p for g in globs for p in (ROOT / "gleamx").glob(g)}
    assert set(PACKAGED.rglob("*.yaml")) <= shipped
    assert cfg["project"]["license"] == "Apache-2.0"
    assert not any(d.startswith("qwen-vl-utils") for d in cfg["project"]["dependencies"])


def test_resolve_config_takes_a_path_or_a_packaged_name(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("max_steps: 1\n")
    assert recipes.resolve_config(["--config", str(mine), "--seed", "1"], "sft") == ["--config", str(mine), "--seed", "1"]
    tiny = str(recipes.path("tiny/sft_lora"))
    for name in ("tiny/sft_lora", "tiny/sft_lora.yaml", "recipes/tiny/sft_lora.yaml"):
        if not Path(name).is_file():  # run from the repo root, recipes/... is a file and is taken as one
            assert recipes.resolve_config(["--lr", "1", "--config", name], "sft") == ["--lr", "1", "--config", tiny]
    assert recipes.resolve_config(["--config=tiny/sft_lora"], "sft") == ["--config", tiny]
    assert recipes.resolve_config(["--config", "retrieval/tiny"], "retrieval")[1] == str(recipes.path("retrieval/tiny"))
    assert recipes.resolve_config(["--seed", "1"], "sft") == ["--seed", "1"]
    for value, kind in (("nowhere/x.yaml", "sft"), ("retrieval/tiny", "sft"), ("tiny/sft_lora", "retrieval"),
                        ("sft.py", "sft")):
        with pytest.raises(GleamConfigError) as e:
            recipes.resolve_config(["--config", value], kind)
        msg = str(e.value)
        assert msg.startswith(f"--config {value}: neither a recipe file (no {Path(value).absolute()})")
        listed = msg.split(" recipes: ", 1)[1].split(", ")
        assert listed == recipes.names(kind) and f"packaged {'SFT' if kind == 'sft' else 'retrieval'} recipes" in msg


def test_cli_sft_names_both_on_a_bad_config_and_runs_the_script_through_the_link(gleamx_cli, monkeypatch):
    r = gleamx_cli("sft", "--config", "no/such_recipe")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert ("error: --config no/such_recipe: neither a recipe file" in r.stderr
            and "packaged SFT recipes: " in r.stderr and "qwen2.5-vl-3b/sft_lora" in r.stderr)
    # the README's checkout form, through the recipes/ link; --help after --config lists every option
    monkeypatch.chdir(ROOT)
    r = gleamx_cli("--config", "recipes/tiny/sft_lora.yaml", "--help", entry=script_entry(Path("recipes/sft.py")))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--max_steps" in r.stdout and "tiny/sft_lora" in r.stdout


@pytest.mark.slow
def test_wheel_ships_the_recipes_and_trains_without_a_checkout(tmp_path, models_tiny_dir):
    """Build the wheel, install it with --target, and from outside the repo: the demo's and the retrieval encoder's recipes
    resolve inside the install, `gleamx sft --help`, and one SFT step from a packaged recipe name."""
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "gleamx", src / "gleamx", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(src), "-w", str(dist)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    (wheel,) = dist.glob("gleamx-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {f"gleamx/recipes/{p.relative_to(PACKAGED).as_posix()}" for p in PACKAGED.rglob("*.yaml")}
    expected |= {"gleamx/recipes/__init__.py", "gleamx/recipes/sft.py", "gleamx/recipes/retrieval.py"}
    assert len(expected) > 10 and expected <= names, sorted(expected - names)
    assert "gleamx/recipes/tiny/sft_lora.yaml" in names and "gleamx/recipes/retrieval/tiny.yaml" in names
    assert "gleamx/recipes/eval/zh_explain.yaml" in names and "gleamx/eval/judge_prompts.yaml" in names
    configs = {f"gleamx/accelerate_configs/{p.name}" for p in (ROOT / "gleamx" / "accelerate_configs").glob("*.yaml")}
    assert len(configs) >= 10 and configs <= names and "gleamx/accelerate_configs/zero3.yaml" in names

    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    work = tmp_path / "work"  # outside the repo: no recipes/ to fall back on
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=work,
                              env=env)

    r = run("-c", "import gleamx, gleamx.demo, gleamx.recipes as r; print(gleamx.__file__); print(gleamx.demo.RECIPE);"
                  " print(r.path('qwen2.5-vl-3b/sft_lora')); print(r.path('retrieval/tiny'))")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.split()
    assert len(lines) == 4 and all(Path(p).resolve().is_relative_to(target.resolve()) for p in lines), r.stdout
    assert Path(lines[1]).is_file() and lines[1].endswith("sft_lora.yaml")

    cli = ("-m", "gleamx.cli.main")
    r = run(*cli, "sft", "--help")
    assert r.returncode == 0 and "usage: gleamx sft" in r.stdout and "--max_steps" in r.stdout, r.stderr[-2000:]
    assert "--accelerate_config FILE|NAME" in r.stdout and "multi_node_zero3" in r.stdout  # read from the install

    from gleamx.synth import synthesize

    data = tmp_path / "data"
    synthesize(data, n=40, seed=0, image_size=32, difficulty="toy")
    model = models_tiny_dir("qwen2_5_vl")
    r = run(*cli, "sft", "--config", "tiny/sft_lora", "--model_name_or_path", str(model), "--dataset_name", str(data),
            "--output_dir", "sft-out", "--max_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (work / "sft-out" / "adapter_model.safetensors").is_file()


OUTPUT_FLAGS = ("--out", "--output", "--output_dir", "--output-dir", "--export-space", "--export_space")


def test_doc_output_folders_are_ignored_by_git():
    """Every top-level folder a command in the README or docs/*.md writes (--out, --output, --output_dir,
    --export-space) is in .gitignore, so following the docs in a checkout leaves `git status` clean; gleamx's own
    packages are not ignored."""
    written = set()
    for c in (c for page in doc_files() for c in commands(page)):
        for i, w in enumerate(c.words):
            flag, eq, inline = w.partition("=")
            if flag in OUTPUT_FLAGS:
                value = inline if eq else (c.words[i + 1] if i + 1 < len(c.words) else "")
                if value and not value.startswith(("-", "/", "~")) and not is_placeholder(value):
                    written.add(value)
    tops = {value.split("/")[0] for value in written}
    assert {"data", "eval", "models", "gleamx-demo", "outputs"} <= tops
    r = subprocess.run(["git", "check-ignore", "--no-index", *[f"{t}/x" if "." not in t else t for t in sorted(tops)]],
                       cwd=ROOT, capture_output=True, text=True)
    ignored = {line.split("/")[0] for line in r.stdout.splitlines()}
    assert ignored == tops, f"not ignored: {sorted(tops - ignored)}"
    code = subprocess.run(["git", "check-ignore", "--no-index", "gleamx/data/load.py", "gleamx/eval/run.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert code.stdout == ""


def test_old_retrieval_spellings_resolve_with_a_notice():
    """One release of grace for the gleamc spellings: recipes, script and class names resolve, each with a notice."""
    import gleamx.retrieval
    from gleamx.retrieval.config import RetrievalConfig

    with pytest.warns(FutureWarning, match=r"gleamc/tiny is now retrieval/tiny"):
        assert recipes.path("gleamc/tiny") == recipes.path("retrieval/tiny")
    with pytest.warns(FutureWarning, match=r"recipes/gleamc/tiny.yaml is now recipes/retrieval/tiny.yaml"):
        argv = recipes.resolve_config(["--config", "recipes/gleamc/tiny.yaml"], "retrieval")
    assert argv[1] == str(recipes.path("retrieval/tiny"))
    with pytest.warns(FutureWarning, match=r"GleamCConfig is now gleamx.retrieval.config.RetrievalConfig"):
        assert gleamx.retrieval.GleamCConfig is RetrievalConfig
    with pytest.raises(AttributeError):
        gleamx.retrieval.NoSuchName  # noqa: B018
    assert "exec bash recipes/slurm/retrieval.sbatch" in (ROOT / "recipes" / "slurm" / "gleamc.sbatch").read_text()
