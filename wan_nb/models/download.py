"""Fetch models and LoRAs from the Hugging Face Hub, turning byte counts into progress reports.

``fetch_snapshot(repo_id, report)`` returns the local folder of a diffusers repo. A model already
in the Hub cache is returned without any network call (and without a ``downloading_model``
stage); otherwise the files are listed, the stage is announced with the size to come, and
``snapshot_download`` runs with a progress class that counts bytes. That class is called from
the download's worker threads; it only adds to counters under a lock. The calling thread (the
generator's task thread) turns the counters into ``report("loading", ...)`` calls a few times a
second, so reports never come from a foreign thread and a stalled download shows as rate 0.

Errors become :class:`ModelNotAvailable`, whose message says what to do.
"""

from __future__ import annotations

import errno
import inspect
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from wan_nb.protocol.errors import ModelNotAvailable, NotEnoughDisk  # noqa: F401 (re-exported)

__all__ = ["ModelNotAvailable", "NotEnoughDisk", "fetch_snapshot", "fetch_file", "cached_snapshot",
           "is_offline", "MODEL_PATTERNS"]

Report = Callable[..., None]

# What a diffusers pipeline needs: configs, safetensors weights, tokenizer files. Leaves out the
# original-format checkpoints (.pth/.bin) some repos carry beside the diffusers folders.
MODEL_PATTERNS = ["model_index.json", "wan_nb.json", "*/*.json", "*/*.safetensors", "*/*.model", "*/*.txt",
                  "*/*.tiktoken"]

REPORT_INTERVAL_S = 0.25
RATE_WINDOW_S = 3.0


# Kept free beside a download: the Hub client writes each file as .incomplete, then renames it.
DISK_MARGIN_BYTES = 1 << 30


def _cache_folder(cache: str | None) -> Path:
    if cache:
        return Path(cache)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _free_bytes(folder: Path) -> int:
    """Free bytes on the filesystem that holds ``folder`` (or its nearest existing parent)."""
    import shutil

    folder = folder.expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _check_disk(repo_id: str, needed: int, cache: str | None) -> None:
    folder = _cache_folder(cache)
    free = _free_bytes(folder)
    if needed + DISK_MARGIN_BYTES > free:
        raise NotEnoughDisk(
            f"model {repo_id!r} needs {_human(needed)} more in the Hugging Face cache at {folder}, but "
            f"only {_human(free)} is free there. Free disk space, or point HF_HOME (or HF_HUB_CACHE) at "
            f"a disk with room (HF_HOME is {os.environ.get('HF_HOME') or 'not set'}), then try again.")


def is_offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def _endpoint(endpoint: str | None) -> str:
    # Read at call time (huggingface_hub reads HF_ENDPOINT once, at import).
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_cache(cache_dir: str | os.PathLike | None) -> str | None:
    if cache_dir:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ---------------------------------------------------------------------------------------------
# Byte counting
# ---------------------------------------------------------------------------------------------
class _ByteCounter:
    """Shared by all progress bars of one download; written from worker threads."""

    def __init__(self, total: int):
        self.lock = threading.Lock()
        self.total = total
        self.done = 0
        self.files_total = 0
        self.files_done = 0
        self.saw_byte_bar = False
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n

    def snapshot(self) -> tuple[int, int, float]:
        now = time.monotonic()
        with self.lock:
            done = self.done
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
                self._samples.popleft()
            t0, d0 = self._samples[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        return done, max(self.total, done), rate


def _progress_class(counter: _ByteCounter):
    """A tqdm subclass that counts instead of drawing.

    huggingface_hub creates bars from it for bytes written (``unit="B"``), for bytes on the wire
    ("Downloading bytes", skipped: the written count is the one that sums to file sizes) and for
    the number of files fetched. All stay disabled, so nothing prints.
    """
    from tqdm.auto import tqdm

    class CountingTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; plain tqdm rejects it
            kwargs["disable"] = True
            desc = str(kwargs.get("desc") or "")
            self._counts_bytes = kwargs.get("unit") == "B" and not desc.startswith("Downloading bytes")
            self._counts_files = not self._counts_bytes and desc.startswith("Fetching")
            super().__init__(*args, **kwargs)
            if self._counts_bytes:
                counter.saw_byte_bar = True
                if kwargs.get("initial"):  # a resumed file: the bytes already on disk
                    counter.add(int(kwargs["initial"]))
            elif self._counts_files:
                counter.files_total = int(kwargs.get("total") or 0)

        def update(self, n=1):
            if n:
                if self._counts_bytes:
                    counter.add(int(n))
                elif self._counts_files:
                    counter.files_done += int(n)
            return super().update(n)

        def __iter__(self):  # thread_map iterates the file bar: count files as they finish
            for item in super().__iter__():
                if self._counts_files:
                    counter.files_done += 1
                yield item

    return CountingTqdm


def _run_with_progress(job: Callable[[], Any], counter: _ByteCounter, report: Report,
                       status: str) -> Any:
    """Run ``job`` on a helper thread; report the counter from this thread until it finishes."""
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["value"] = job()
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="wan-nb-download", daemon=True)
    started = time.monotonic()
    worker.start()
    first = True
    while True:
        if not first:  # the first report goes out at once: the size to come, before any byte
            worker.join(REPORT_INTERVAL_S)
        first = False
        finished = not worker.is_alive()
        if finished and "error" in outcome:
            raise outcome["error"]
        done, total, rate = counter.snapshot()
        if finished:
            done = total  # every file is on disk (also when this hub version had no byte bar)
            rate = total / max(time.monotonic() - started, 1e-6)
        elif not counter.saw_byte_bar and counter.files_total:
            done = total * counter.files_done // counter.files_total
        progress = 100.0 * done / total if total else (100.0 if finished else 0.0)
        report("loading", progress=round(progress, 1),
               status=f"{status}: {_human(done)} of {_human(total)}"
                      + (f" at {_human(rate)}/s" if rate > 0 else ""),
               component=None, bytes_downloaded=int(done), bytes_total=int(total), rate=float(rate))
        if finished:
            return outcome.get("value")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def _explain(exc: BaseException, repo_id: str, endpoint: str, what: str = "model") -> ModelNotAvailable:
    from huggingface_hub import errors

    name = type(exc).__name__
    if isinstance(exc, errors.GatedRepoError):
        msg = (f"{what} {repo_id!r} is gated: accept its licence at {endpoint}/{repo_id} and log in "
               f"(`hf auth login` or set HF_TOKEN).")
    elif isinstance(exc, errors.RepositoryNotFoundError):
        msg = (f"{what} {repo_id!r} was not found on {endpoint}. Check the spelling (see "
               f"wan_nb.presets() for the built-in names); a private repo needs `hf auth login` "
               f"or HF_TOKEN.")
    elif isinstance(exc, errors.RevisionNotFoundError):
        msg = f"{what} {repo_id!r}: the requested revision does not exist on {endpoint}."
    elif isinstance(exc, errors.EntryNotFoundError):
        msg = f"{what} {repo_id!r}: a file is missing on {endpoint} ({exc})."
    elif isinstance(exc, errors.OfflineModeIsEnabled) or (
            isinstance(exc, errors.LocalEntryNotFoundError) and is_offline()):
        msg = _offline_message(repo_id, what)
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        msg = (f"{what} {repo_id!r}: the disk filled up while downloading ({exc}). Free disk space, or "
               f"point HF_HOME (or HF_HUB_CACHE) at a disk with room, then try again: the files already "
               f"complete are kept.")
    elif isinstance(exc, errors.HfHubHTTPError):
        msg = (f"{what} {repo_id!r}: the Hub at {endpoint} answered with an error ({exc}). Try again "
               f"later, or download it elsewhere and pass the folder.")
    else:
        msg = (f"{what} {repo_id!r} could not be downloaded from {endpoint}: {name}: {exc}. Check "
               f"your network connection or proxy (HF_ENDPOINT selects a mirror), or download it "
               f"on another machine and pass its folder.")
    error = ModelNotAvailable(msg)
    error.__cause__ = exc
    return error


def _offline_message(repo_id: str, what: str = "model") -> str:
    return (f"{what} {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
            f"downloading it. Unset HF_HUB_OFFLINE to download it (once), or fetch it on a "
            f"connected machine with `hf download {repo_id}` and copy the cache, or pass the "
            f"path of a local diffusers folder.")


# ---------------------------------------------------------------------------------------------
# Public
# ---------------------------------------------------------------------------------------------
def cached_snapshot(repo_id: str, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached folder of ``repo_id`` if it is complete, without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=_hub_cache(cache_dir),
                                   allow_patterns=MODEL_PATTERNS, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    folder = Path(folder)
    return folder if (folder / "model_index.json").is_file() else None


def fetch_snapshot(repo_id: str, report: Report, *, revision: str | None = None,
                   endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                   token: str | bool | None = None, skip: Any = ()) -> Path:
    """Return the local folder of diffusers repo ``repo_id``, downloading what is missing
    (``skip``: patterns left out, e.g. the weights of a transformer given as a single file)."""
    from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    cached = cached_snapshot(repo_id, revision=revision, cache_dir=cache_dir)
    if cached is not None:
        return cached
    if is_offline():
        raise ModelNotAvailable(_offline_message(repo_id))
    endpoint = _endpoint(endpoint)
    cache = _hub_cache(cache_dir)
    try:
        api = HfApi(endpoint=endpoint, token=token)
        # One request, no retries: a dead network fails fast here (tree listings retry for ~20 s).
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        wanted = list(filter_repo_objects(sizes, allow_patterns=MODEL_PATTERNS, ignore_patterns=list(skip) or None))
        missing = [name for name in wanted
                   if not isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache,
                                                            revision=revision), str)]
    except Exception as exc:
        raise _explain(exc, repo_id, endpoint) from exc
    if "model_index.json" not in wanted:
        raise ModelNotAvailable(f"model {repo_id!r} on {endpoint} is not a diffusers pipeline (it has no "
                                f"model_index.json); use a '-Diffusers' repo or a local diffusers folder.")
    total = sum(sizes[name] for name in missing)
    _check_disk(repo_id, total, cache)  # before any byte: a full disk is not a network error
    report("stage", stage="downloading_model",
           message=f"Downloading {repo_id}: {len(missing)} files, {_human(total)}")
    counter = _ByteCounter(total)
    try:
        folder = _run_with_progress(
            lambda: snapshot_download(repo_id, revision=revision, cache_dir=cache, endpoint=endpoint,
                                      token=token, allow_patterns=MODEL_PATTERNS, ignore_patterns=list(skip) or None,
                                      tqdm_class=_progress_class(counter)),
            counter, report, f"Downloading {repo_id}")
    except Exception as exc:
        raise _explain(exc, repo_id, endpoint) from exc
    return Path(folder)


def fetch_file(repo_id: str, filename: str, report: Report | None = None, *,
               revision: str | None = None, endpoint: str | None = None,
               cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
               what: str = "LoRA") -> Path:
    """Download one file of ``repo_id`` (cached after the first time), reporting bytes."""
    from huggingface_hub import hf_hub_download

    endpoint = _endpoint(endpoint)
    kwargs = dict(repo_id=repo_id, filename=filename, revision=revision, endpoint=endpoint,
                  cache_dir=_hub_cache(cache_dir), token=token)
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True))
    except Exception:
        pass
    if is_offline():
        raise ModelNotAvailable(_offline_message(f"{repo_id}/{filename}", what))
    counter = _ByteCounter(0)
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _progress_class(counter)

    def job():
        return hf_hub_download(**kwargs)

    try:
        if report is None:
            return Path(job())
        # The per-file bar brings the total with it (its first `total`), so size it lazily.
        counter.total = _remote_size(repo_id, filename, revision, endpoint, token) or 0
        return Path(_run_with_progress(job, counter, report, f"Downloading {repo_id}/{filename}"))
    except Exception as exc:
        raise _explain(exc, f"{repo_id}/{filename}", endpoint, what) from exc


def _remote_size(repo_id, filename, revision, endpoint, token) -> int | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    return get_hf_file_metadata(url, token=token).size


def list_files(repo_id: str, *, revision: str | None = None, endpoint: str | None = None,
               token: str | bool | None = None, what: str = "LoRA") -> list[str]:
    """File names in ``repo_id`` (network)."""
    from huggingface_hub import HfApi

    endpoint = _endpoint(endpoint)
    if is_offline():
        raise ModelNotAvailable(_offline_message(repo_id, what))
    try:
        return list(HfApi(endpoint=endpoint, token=token).list_repo_files(repo_id, revision=revision))
    except Exception as exc:
        raise _explain(exc, repo_id, endpoint, what) from exc
