"""Downloads from a local stand-in for the Hugging Face Hub (tests/_hub_server.py, 127.0.0.1)."""
import re
import threading

import pytest
import torch

from wan_nb.models import lora_files as lora
from wan_nb.models import specs as models
from wan_nb.models import tiny
from wan_nb.models.download import ModelNotAvailable, fetch_snapshot
from _hub_server import HubServer
from _models_helpers import Reports, latents

REPO = "wan-nb/tiny-wan"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The tiny model served as REPO (slowed down a little so progress has something to show),
    with an empty Hugging Face cache for this test and online mode."""
    import huggingface_hub.constants

    folder = tiny.build("tiny", models.cache_dir() / "models" / "tiny-served")
    lora_dir = tmp_path / "served" / "lora"
    tiny.make_lora(models.load_pipeline(models.resolve(str(folder)), device="cpu").transformer,
                   lora_dir / "ink.safetensors", seed=5)
    (lora_dir / "README.md").write_text("a LoRA for the tiny model")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HubServer({REPO: folder, "wan-nb/ink-lora": lora_dir}, chunk_delay=0.02) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_download_reports_bytes_that_add_up_to_the_files(hub):
    reports = Reports()
    spec = models.resolve(REPO)
    assert spec.inferred  # not cached yet: described from its name until downloaded
    pipe = models.load_pipeline(spec, device="cpu", report=reports)
    assert reports.stages() == ["downloading_model", "loading_model"]
    loading_starts = [i for i, (kind, f) in enumerate(reports.calls) if f.get("stage") == "loading_model"][0]
    download = [f for kind, f in reports.calls[:loading_starts] if kind == "loading"]
    assert len(download) >= 3 and all("bytes_total" in f for f in download)
    assert download[0]["bytes_downloaded"] < download[-1]["bytes_downloaded"]
    assert not any("bytes_total" in f for kind, f in reports.calls[loading_starts:])
    done = [f["bytes_downloaded"] for f in download]
    assert done == sorted(done)
    assert download[-1]["bytes_downloaded"] == download[-1]["bytes_total"] == hub.total_bytes(REPO)
    assert all(f["bytes_total"] == hub.total_bytes(REPO) for f in download)
    assert download[-1]["progress"] == 100.0 and download[-1]["rate"] > 0
    # Downloads run on helper threads, reports come only from the caller's thread.
    assert reports.threads == {threading.current_thread().name}
    # The downloaded model now describes itself exactly (defaults from its wan_nb.json).
    exact = models.refine(spec, pipe)
    assert not exact.inferred and exact.defaults["height"] == 32
    assert latents(pipe).shape[0] == 1


def test_cached_model_loads_without_the_network(hub, monkeypatch):
    models.load_pipeline(models.resolve(REPO), device="cpu")
    served = len(hub.requests)
    reports = Reports()
    spec = models.resolve(REPO)
    assert not spec.inferred  # described from the cache, no request
    models.load_pipeline(spec, device="cpu", report=reports)
    assert reports.stages() == ["loading_model"]
    assert len(hub.requests) == served
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and offline it works too
    models.load_pipeline(models.resolve(REPO), device="cpu")


def test_offline_and_not_cached_says_what_to_do(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="HF_HUB_OFFLINE") as info:
        models.load_pipeline(models.resolve(REPO), device="cpu")
    assert REPO in str(info.value) and "hf download" in str(info.value)
    assert hub.requests == []


def test_unknown_repo_is_a_clear_error(hub):
    with pytest.raises(ModelNotAvailable, match="was not found"):
        fetch_snapshot("wan-nb/no-such-model", Reports())


def test_network_failure_is_a_clear_error(hub, monkeypatch):
    import socket

    with socket.socket() as closed:   # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotAvailable, match="could not be downloaded.*network"):
        fetch_snapshot(REPO, Reports())


def test_repo_without_model_index_is_refused(hub):
    with pytest.raises(ModelNotAvailable, match="not a diffusers pipeline"):
        fetch_snapshot("wan-nb/ink-lora", Reports())


def test_lora_from_a_repo_id_downloads_with_progress(hub):
    reports = Reports()
    state = lora.read_lora("wan-nb/ink-lora", report=reports)
    assert state.name == "ink" and state.format == "diffusers"
    sizes = [f["bytes_total"] for f in reports.loading()]
    assert reports.loading()[-1]["bytes_downloaded"] == sizes[-1] == state.path.stat().st_size
    assert lora.read_lora("wan-nb/ink-lora/ink.safetensors").path == state.path
    with pytest.raises(lora.LoraError, match="not found"):
        lora.read_lora("wan-nb/no-such-lora")
    pipe = models.load_pipeline(models.resolve("tiny"), device="cpu")
    lora.attach(pipe, "ink", state)
    lora.activate(pipe, {"ink": 1.0})
    assert not torch.equal(latents(pipe), latents(models.load_pipeline(models.resolve("tiny"), device="cpu")))


def test_a_download_that_cannot_fit_is_refused_before_any_byte(hub, monkeypatch, tmp_path):
    """Stands in for a nearly full disk: the free-space query of the cache's filesystem answers
    1 MB (the check itself, the Hub's sizes and the message are real)."""
    from wan_nb.models import download

    monkeypatch.setattr(download, "_free_bytes", lambda folder: 1_000_000)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    reports = Reports()
    with pytest.raises(download.NotEnoughDisk) as error:
        fetch_snapshot(REPO, reports)
    message = str(error.value)
    assert "1.0 MB is free" in message and str(tmp_path / "hf-cache") in message
    assert "HF_HOME" in message and str(tmp_path / "hf-home") in message
    assert "network" not in message
    assert re.search(r"needs \d+(\.\d)? [KMG]?B more", message), message
    assert hub.downloads() == []                   # not one file was fetched
    assert "downloading_model" not in reports.stages()


def test_a_disk_that_fills_up_mid_download_is_named_as_such():
    import errno

    from wan_nb.models.download import _explain

    error = _explain(OSError(errno.ENOSPC, "No space left on device"), REPO, "http://hub")
    assert "disk filled up" in str(error) and "HF_HOME" in str(error) and "network" not in str(error)
