"""The JupyterLab extension, in a real JupyterLab and a real headless Chromium.

Generations started by *other processes* (the ``wan-nb`` CLI, a storyboard script) sharing the
Lab's runtime dir show up in the "Wan generations" sidebar and the status bar, live; Cancel in
the sidebar stops a CLI run; videos play in a main-area player; after a Lab restart the
finished runs are still listed and the sidebar is restored. The extension under test is this
checkout's build (``wan_nb/labextension``), put first on the Lab's JUPYTER_PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _jupyter_helpers import running_jupyter  # noqa: E402
from test_quickstart_pages import _in_browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "wan_nb" / "labextension"
JUPYTER = Path(sys.executable).with_name("jupyter")
WAN_NB = Path(sys.executable).with_name("wan-nb")
# A storyboard in a script of its own, with a live preview at every step.
STORYBOARD = """
import sys, time
from wan_nb import Generator, Storyboard

with Generator(model="tiny", runs_dir=sys.argv[1], preview_every=1) as gen:
    board = Storyboard(gen, ["a fox wakes", "the fox runs", "the fox sleeps"], id=sys.argv[2],
                       seed=0, num_frames=5, steps=4, progress_interval=0.05)
    board.submit().result(timeout=600)
    print("completed", flush=True)
    time.sleep(0.5)  # let the last frames leave the relay socket
"""
SCREENSHOT = ROOT / "docs" / "lab-sidebar.png"
SIDEBAR_TAB = ".lm-TabBar-tab[data-id='wan-nb-generations']"
# Three producers load the tiny model at once; on a busy 2-core machine that can take minutes.
LOAD_MS = 240_000
SMALL = ["--model", "tiny", "--height", "64", "--width", "64", "--frames", "17"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Records, in the page, when each row first appeared and every value its progress bar, status
# and scene buttons took (with Date.now()), so the test reads the history, not just the end.
OBSERVER = """() => {
  const w = window.__wan = {seen: {}, bars: {}, scenes: {}, statuses: {}, thumbs: 0};
  const note = (map, id, value, now) => {
    const list = map[id] || (map[id] = []);
    if (!list.length || list[list.length - 1][1] !== value) list.push([now, value]);
  };
  const look = () => {
    const now = Date.now();
    for (const row of document.querySelectorAll('.wan-nb-Row')) {
      const id = row.dataset.taskId;
      if (!(id in w.seen)) w.seen[id] = now;
      note(w.bars, id, row.querySelector('.wan-nb-Row-bar').getAttribute('aria-valuenow'), now);
      note(w.statuses, id, row.dataset.status, now);
      note(w.scenes, id, row.querySelectorAll('.wan-nb-scene').length, now);
      const thumb = row.querySelector('.wan-nb-Row-thumb');
      if (!thumb.hidden && thumb.src.startsWith('data:image/')) w.thumbs++;
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true,
    attributes: true, attributeFilter: ['aria-valuenow', 'data-status', 'src']});
  look();
}"""


def _require_build() -> None:
    if not (BUILT / "package.json").is_file():
        pytest.fail(f"{BUILT} is missing: `make setup` builds the JupyterLab extension (needs npm)")


def _lab_env(tmp_path: Path) -> dict[str, str]:
    """Lab sees this checkout's extension first, and shares its runtime dir with the CLI runs."""
    _require_build()
    labext = tmp_path / "jupyter_path" / "labextensions"
    labext.mkdir(parents=True, exist_ok=True)
    link = labext / "wan-nb"
    if not link.exists():
        link.symlink_to(BUILT, target_is_directory=True)
    return {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_PATH": str(tmp_path / "jupyter_path"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter_data"),  # the runs dirs a server remembers
            "WAN_NB_RUNS_DIR": str(tmp_path / "root" / "wan_nb_runs"),
            "PYTHONPATH": str(ROOT)}


def _lab(tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return running_jupyter("lab", root, tmp_path, {**_lab_env(tmp_path), **(env or {})},
                           ("--LabApp.news_url=",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *extra))


class _Producer:
    """A producer process of its own (the CLI, a script), sharing only the runtime dir and the
    runs dir with the Lab. Its output is drained on a thread: a --json run prints every event,
    and a full pipe would stall it."""

    def __init__(self, tmp_path: Path, *args) -> None:
        env = {**os.environ, **_lab_env(tmp_path)}
        self.err_path = tmp_path / f"producer-{os.urandom(3).hex()}.err"
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([str(a) for a in args], cwd=tmp_path, env=env,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        self.lines: list[str] = []
        self._first = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._first.set()
        self._first.set()

    def first_event(self, timeout: float = 120) -> dict:
        self._first.wait(timeout)
        if not self.lines:
            raise AssertionError(f"the producer printed nothing: {self.stderr()}")
        return json.loads(self.lines[0])

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.err_path.read_text()[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _open_lab(page, base: str, token: str) -> None:
    page.goto(f"{base}/lab?token={token}")
    page.wait_for_selector(SIDEBAR_TAB, timeout=60_000)


def _open_sidebar(page) -> None:
    if not page.locator(".wan-nb-Sidebar").is_visible():
        page.locator(SIDEBAR_TAB).click()
    page.wait_for_selector(".wan-nb-Sidebar", state="visible", timeout=10_000)


def _row(page, task_id: str):
    return page.locator(f".wan-nb-Row[data-task-id='{task_id}']")


def _history(page, name: str, task_id: str) -> list:
    return page.evaluate(f"() => (window.__wan.{name}[{json.dumps(task_id)}] || [])")


def _play_and_check(page, button) -> None:
    """Click a Play/Scene/Final film button: a main-area <video> loads the MP4 (seekable)."""
    button.click()
    video = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .wan-nb-Player video").last
    video.wait_for(timeout=10_000)
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=video.element_handle(),
                           timeout=20_000)
    seekable = video.evaluate("v => v.seekable.length ? v.seekable.end(0) : 0")
    assert seekable > 0, "the video is not seekable (Range requests)"
    download = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .wan-nb-download").last
    assert download.get_attribute("download", timeout=5_000).endswith(".mp4")


def test_the_package_installs_the_extension_enabled(tmp_path):
    """The wheel alone (no Node, no build step) puts the extension where Lab finds it, enabled."""
    _require_build()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, timeout=180)
    wheel = next(tmp_path.glob("wan_nb-*.whl"))
    prefix = tmp_path / "prefix"
    data = "wan_nb-0.1.0.data/data/"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(data + "share/jupyter/"):
                archive.extract(name, prefix)
    share = prefix / data / "share" / "jupyter"
    assert (share / "labextensions" / "wan-nb" / "install.json").is_file()
    listing = subprocess.run([str(JUPYTER), "labextension", "list"], capture_output=True, text=True,
                             env={**os.environ, "JUPYTER_PATH": str(share), "NO_COLOR": "1"}, timeout=60)
    text = _plain(listing.stdout + listing.stderr)
    section = text.split(str(share / "labextensions"), 1)[1].split("\n\n")[0]
    assert "wan-nb v0.1.0 enabled OK (python, wan_nb)" in section, text


def test_make_setup_installed_it_in_this_checkouts_venv():
    """`make setup` leaves the extension enabled and OK in the venv (checked where the venv is
    this checkout's own, as in CI; a shared venv of another checkout holds its own build)."""
    if Path(sys.prefix).resolve().parent != ROOT:
        pytest.skip(f"the venv {sys.prefix} belongs to another checkout")
    listing = subprocess.run([str(JUPYTER), "labextension", "list"], capture_output=True, text=True,
                             env={**os.environ, "NO_COLOR": "1"}, timeout=60)
    assert "wan-nb v0.1.0 enabled OK" in _plain(listing.stdout + listing.stderr)


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_sidebar_follows_cli_runs_cancels_them_plays_videos_and_survives_a_restart(tmp_path):
    done, board = {}, "sb-lab-" + os.urandom(3).hex()
    with _lab(tmp_path) as (base, token):
        _in_browser(tmp_path, lambda page: _live_checks(page, base, token, tmp_path, done, board))
    # A new Lab on the same machine: the finished runs are listed again, the sidebar restored.
    with _lab(tmp_path) as (base, token):
        _in_browser(tmp_path, lambda page: _after_restart(page, base, token, done, board))


def _live_checks(page, base: str, token: str, tmp_path: Path, done: dict, board: str) -> None:
    _open_lab(page, base, token)
    _open_sidebar(page)
    page.wait_for_selector(".wan-nb-Sidebar[data-availability='ready']", timeout=20_000)
    page.evaluate(OBSERVER)
    short = _Producer(tmp_path, WAN_NB, "generate", "a red fox running through snow", *SMALL,
                   "--steps", "40", "--json")
    long = _Producer(tmp_path, WAN_NB, "generate", "an owl that never lands", *SMALL,
                  "--steps", "100000", "--json")  # minutes of work: only the Cancel ends it
    script = tmp_path / "storyboard.py"
    script.write_text(STORYBOARD)
    story = _Producer(tmp_path, sys.executable, script, tmp_path / "root" / "wan_nb_runs", board)
    try:
        started = short.first_event()
        printed_ms = time.time() * 1000  # when the CLI's own --json line reached us
        task_id = started["task_id"]
        long_id = long.first_event()["task_id"]
        _row(page, task_id).wait_for(timeout=10_000)
        started_ms = _iso_ms(started["data"]["timestamp"])
        seen_ms = page.evaluate("id => window.__wan.seen[id]", task_id)
        print(f"row shown {seen_ms - started_ms:.0f} ms after generation_started's timestamp, "
              f"{seen_ms - printed_ms:.0f} ms after the CLI printed it")

        # The status bar counts the running tasks (the two CLI runs, the storyboard, its scenes).
        status = page.locator(".wan-nb-Status")
        status.wait_for(state="visible", timeout=10_000)
        page.wait_for_function("() => /Wan: [2-9] running · \\d+ %/.test("
                               "document.querySelector('.wan-nb-Status').textContent)", timeout=LOAD_MS)
        status_text = status.text_content()
        page.locator(SIDEBAR_TAB).click()  # close the sidebar; the status-bar item opens it again
        page.wait_for_selector(".wan-nb-Sidebar", state="hidden", timeout=10_000)
        status.click()
        page.wait_for_selector(".wan-nb-Sidebar", state="visible", timeout=10_000)
        _notebook7_lists(page.context.browser.new_page(), base, token, task_id)

        # The long run: cancelled from the sidebar once it is denoising; the CLI exits cancelled.
        long_row = _row(page, long_id)
        page.wait_for_function("""id => { const r = document.querySelector(`.wan-nb-Row[data-task-id='${id}']`);
                                   return r && /steps [1-9]\\d*\\//.test(r.textContent); }""",
                               arg=long_id, timeout=LOAD_MS)
        # A dropped connection: the stream comes back with the last id it saw, and (below) the
        # rows end up with every event of their tasks, none lost in the gap.
        resumed: list[str] = []
        page.on("request", lambda r: resumed.append(r.headers["last-event-id"])
                if "/wan-nb/api/events" in r.url and r.headers.get("last-event-id") else None)
        dropped = _drop_connections(base)
        if dropped:
            _wait_until(page, lambda: resumed, 30)
        if os.environ.get("WAN_NB_UPDATE_SCREENSHOT") == "1":
            page.wait_for_function("id => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)"
                                   ".dataset.status === 'completed'", arg=task_id, timeout=LOAD_MS)
            page.locator(".wan-nb-Sidebar").screenshot(path=str(SCREENSHOT))
        long_row.get_by_role("button", name="Cancel").click()
        assert long.wait(60) == 130, long.stderr()
        page.wait_for_function("id => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)"
                               ".dataset.status === 'cancelled'", arg=long_id, timeout=10_000)
        _assert_every_event_shown(page, base, token, long_id)

        # The short run ends completed, its bar having moved on the way; it plays.
        assert short.wait(LOAD_MS / 1000) == 0, short.stderr()
        page.wait_for_function("id => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)"
                               ".dataset.status === 'completed'", arg=task_id, timeout=10_000)
        bars = _history(page, "bars", task_id)
        moving = {v for _, v in bars if v not in ("0", "100")}
        assert len(moving) >= 3 and bars[-1][1] == "100", bars
        print(f"bar values seen: {len(bars)}; most updates in one second: {_most_in_a_second(bars)}")
        assert _most_in_a_second(bars) <= 12  # the sidebar redraws a row at most ~10 times a second
        _assert_every_event_shown(page, base, token, task_id)
        _play_and_check(page, _row(page, task_id).get_by_role("button", name="Play"))
        _copy_and_folder(page, task_id, "a red fox running through snow")
        done["short"], done["long"], done["status"] = task_id, long_id, status_text

        # The storyboard: its scenes show up one by one, then the final film.
        assert story.wait(LOAD_MS / 1000) == 0, story.stderr()
        board_row = _row(page, board)
        board_row.get_by_role("button", name="Play the final film").wait_for(timeout=20_000)
        scenes = [n for _, n in _history(page, "scenes", board)]
        assert scenes[-1] == 3 and {1, 2} <= set(scenes), scenes
        assert page.evaluate("() => window.__wan.thumbs") > 0, "no live preview was shown"
        _play_and_check(page, board_row.get_by_role("button", name="Play scene 2"))
        _play_and_check(page, board_row.get_by_role("button", name="Play the final film"))
    finally:
        for producer in (short, long, story):
            producer.stop()


def _notebook7_lists(page, base: str, token: str, task_id: str) -> None:
    """Notebook 7's file browser page: the same sidebar, opened from View > Left Sidebar."""
    page.goto(f"{base}/tree?token={token}")
    # Notebook 7 fills View > Left Sidebar only once the extensions on the page have registered
    # their panels, and a submenu opens on hover only once the menu has rendered: on a loaded
    # machine the first try can come too early, so the page is given more time and the menu is
    # opened again (the sidebar must still appear below).
    for attempt in range(4):
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text="View").first.click(timeout=20_000)
            page.locator(".lm-Menu-item", has_text="Left Sidebar").first.hover(timeout=15_000)
            page.locator(".lm-Menu-item", has_text="Show Wan generations").first.click(timeout=15_000)
            break
        except Exception:
            if attempt == 3:
                raise
            page.keyboard.press("Escape")
            page.keyboard.press("Escape")
            page.wait_for_timeout(3_000)
            if attempt == 1:
                page.reload()
    page.wait_for_selector(".wan-nb-Sidebar", state="visible", timeout=20_000)
    _row(page, task_id).wait_for(timeout=20_000)
    page.close()


def _copy_and_folder(page, task_id: str, prompt: str) -> None:
    """Copy puts the recipe on the clipboard; Folder shows the run folder in the file browser."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _row(page, task_id).get_by_role("button", name="Copy").click()
    copied = json.loads(page.evaluate("() => navigator.clipboard.readText()"))
    assert copied["prompt"] == prompt and copied["task_id"] == task_id and copied["params"]["steps"] == 40
    _row(page, task_id).get_by_role("button", name="Show the run folder").click()
    page.wait_for_function("id => (document.querySelector('.jp-FileBrowser .jp-BreadCrumbs') || {})"
                           ".textContent.includes(id)", arg=task_id, timeout=10_000)
    _open_sidebar(page)


def _drop_connections(base: str) -> bool:
    """Cut every TCP connection to the server (as a network drop would); False where the
    machine cannot (no ``ss -K``: iproute2 and a kernel with socket destroy)."""
    port = base.rsplit(":", 1)[1]
    if shutil.which("ss") is None:
        return False
    cut = subprocess.run(["ss", "-K", "-t", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10)
    dropped = cut.returncode == 0 and len(cut.stdout.strip().splitlines()) > 1
    print("dropped the page's connections" if dropped else f"cannot drop connections here: {cut.stderr}")
    return dropped


def _wait_until(page, predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the event stream did not resume with Last-Event-ID")
        page.wait_for_timeout(100)  # (playwright delivers page events only inside its calls)


def _assert_every_event_shown(page, base: str, token: str, task_id: str) -> None:
    """The row applied each of the task's events once: its count equals the server's last seq."""
    snap = requests.get(f"{base}/wan-nb/api/tasks/{task_id}", params={"token": token}, timeout=10).json()
    page.wait_for_function("([id, seq]) => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)"
                           ".dataset.lastSeq == seq", arg=[task_id, snap["last_seq"]], timeout=10_000)
    assert _row(page, task_id).get_attribute("data-events") == str(snap["last_seq"])


def _after_restart(page, base: str, token: str, done: dict, board: str) -> None:
    _open_lab(page, base, token)
    # Restored across reloads: the sidebar is open again without a click.
    page.wait_for_selector(".wan-nb-Sidebar[data-availability='ready']", state="visible", timeout=20_000)
    assert not page.locator(".wan-nb-Status").is_visible()  # nothing runs: no status-bar item
    for task_id, status in ((done["short"], "completed"), (done["long"], "cancelled"), (board, "completed")):
        row = _row(page, task_id)
        row.wait_for(timeout=10_000)
        assert row.get_attribute("data-status") == status
    _play_and_check(page, _row(page, done["short"]).get_by_role("button", name="Play"))


def _iso_ms(timestamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _most_in_a_second(history: list) -> int:
    times = [t for t, _ in history]
    return max((sum(1 for u in times if t <= u < t + 1000) for t in times), default=0)


def test_without_the_server_extension_the_sidebar_says_so_in_the_dark_theme_too(tmp_path):
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark"}')
    dark = {"JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    with _lab(tmp_path, "--ServerApp.jpserver_extensions={'wan_nb': False}", env=dark) as (base, token):
        def check(page):
            _open_lab(page, base, token)
            _open_sidebar(page)
            notice = page.locator(".wan-nb-Sidebar-notice")
            notice.wait_for(state="visible", timeout=20_000)
            assert "server extension is not running" in notice.text_content()
            assert page.locator(".wan-nb-Sidebar[data-availability='missing']").count() == 1
            page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=20_000)
            text, back = page.evaluate("""() => {
                const lum = c => { const [r, g, b] = c.match(/[0-9.]+/g).map(Number);
                                   return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
                const sidebar = document.querySelector('.wan-nb-Sidebar');
                return [lum(getComputedStyle(document.querySelector('.wan-nb-Sidebar-notice')).color),
                        lum(getComputedStyle(sidebar).backgroundColor)]; }""")
            assert text > back + 80, (text, back)  # light text on a dark panel
        _in_browser(tmp_path, check)
