"""Local paths first, fast: a mistyped path is "not found" without asking the Hub; a Hub id is one quick call."""

from __future__ import annotations

import pytest

from gleamx import sources
from gleamx.errors import GleamDataError, GleamModelError


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub call fails the test: a path-like name must be decided locally."""
    import huggingface_hub

    def called(*a, **k):
        raise AssertionError("the Hub was asked about a local path")

    for name in ("model_info", "dataset_info", "snapshot_download", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, called)


@pytest.mark.parametrize("name", ["./x", "/abs/none", "~/none/x", "a/b/c", "data\\synt", "C:x"])
def test_path_shapes_are_paths(name):
    assert sources.looks_like_path(name)


def test_a_name_under_an_existing_folder_is_a_path_and_user_name_is_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert sources.looks_like_path("outputs/gleamc") and not sources.looks_like_path("Qwen/Qwen2-VL-2B-Instruct")
    assert sources.missing_path("outputs/gleamc") == "outputs/gleamc: not found (no such file or directory)"
    assert "does not exist either" in sources.missing_path("./nowhere/x")
    assert sources.missing_path("Qwen/Qwen2-VL-2B-Instruct") is None and sources.missing_path("outputs") is None


def test_mistyped_local_paths_are_not_found_without_the_hub(tmp_path, monkeypatch, no_hub):
    from gleamx.data import load_samples
    from gleamx.models.load import resolve_source
    from gleamx.retrieval.encoder import load_encoder

    monkeypatch.chdir(tmp_path)
    for folder in ("data", "outputs", "models"):
        (tmp_path / folder).mkdir()
    with pytest.raises(GleamDataError, match=r"^data/synt: path: not found \(no such file or directory\)$"):
        load_samples("data/synt")
    with pytest.raises(GleamModelError, match=r"^encoder: outputs/gleamc: not found \(no such file or directory\)$"):
        load_encoder("outputs/gleamc")
    with pytest.raises(GleamModelError, match=r"^model: models/tny: not found"):
        resolve_source("models/tny")


def test_an_unreachable_hub_is_one_line_without_the_libraries_retries(monkeypatch, tmp_path):
    """No network: one metadata call fails, and datasets/from_pretrained (which retry for half a minute) are never
    reached."""
    import datasets
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*a, **k):
        raise ConnectionError("[Errno -2] Name or service not known")

    def never(*a, **k):
        raise AssertionError("reached the library's own (retrying) loader")

    monkeypatch.setattr(huggingface_hub, "dataset_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", never)
    from gleamx.data import load_samples
    from gleamx.models.load import resolve_source

    with pytest.raises(GleamDataError, match=r"^someone/gx: dataset: not a local path, and the Hub is unreachable "
                                             r"\(ConnectionError: .*\); set HF_HUB_OFFLINE=1 to use a cached copy$"):
        load_samples("someone/gx")
    with pytest.raises(GleamModelError, match=r"^model: 'someone/m': not a local path, and the Hub is unreachable"):
        resolve_source("someone/m")


def test_offline_a_model_outside_the_cache_is_one_line(monkeypatch, no_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem, cache_only = sources.hub_access("someone/not-cached", "model")
    assert problem == "not a local path, and not a Hub id in the local Hub cache (HF_HUB_OFFLINE is set)" and cache_only
    assert sources.hub_access("someone/ds", "dataset") == (None, True)  # datasets reads its own cache offline


def test_offline_set_after_datasets_was_imported_is_honoured(monkeypatch):
    """``HF_HUB_OFFLINE=1`` set once ``datasets`` has frozen it: a Hub dataset id fails at once (no half minute of
    retries), and the libraries' own settings are put back afterwards."""
    import time

    import datasets
    import huggingface_hub.constants as hc

    from gleamx.data.hf import hf_splits
    from gleamx.errors import GleamDataError

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(GleamDataError, match="OfflineModeIsEnabled"):
        hf_splits("user/some-hf-dataset", None)
    assert time.perf_counter() - start < 5
    assert hc.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False
