"""The storyboard panel: one row per scene (status, bar, the player once done) and the final video.

It reads only the storyboard's own ``storyboard_progress`` events (every one carries the state
of every scene), so it draws the same picture whether it was opened before the run, during it,
or after it (``replay``). Redraws go through a :class:`Throttle`; players are added as soon as
a scene is announced.
"""

from __future__ import annotations

import html
import sys
import threading
from typing import Any, TextIO

import ipywidgets as w

from wan_nb.protocol.events import Event, EventType
from ._throttle import Throttle
from .cancel_button import CancelButton
from .video import VideoPlayer

__all__ = ["StoryboardPanel", "StoryboardResultView", "show_storyboard", "show_storyboard_result"]

# A scene's states; "stopped": cancelled with its checkpoint kept (resume() continues it mid-scene).
BAR_STYLE = {"completed": "success", "reused": "success", "failed": "danger", "cancelled": "warning",
             "stopped": "warning", "running": "info", "pending": ""}
STATUS_TEXT = {"pending": "waiting", "running": "rendering", "completed": "done", "reused": "done (kept)",
               "failed": "failed", "cancelled": "cancelled", "stopped": "stopped (resumable)"}
STATUS_COLOR = {"pending": "#777", "running": "#0072b2", "completed": "#2e7d32", "reused": "#2e7d32",
                "failed": "#c62828", "cancelled": "#e65100", "stopped": "#8e6c00"}


def _board_of(source: Any) -> Any:
    return getattr(source, "board", source)  # a StoryboardRun has .board; a Storyboard is one


class _SceneRow(w.HBox):
    def __init__(self, index: int, prompt: str, frames: int, display_width: int) -> None:
        self.index = index
        self.display_width = display_width
        self.label = w.HTML(f"<b>Scene {index}</b> <span style='opacity:.7'>({frames} frames)</span><br>"
                            f"<span style='font-size:12px'>{html.escape(prompt)}</span>",
                            layout=w.Layout(width="260px"))
        self.status = w.HTML()
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=100.0, layout=w.Layout(width="160px"))
        self.bar.add_class("wan-nb-scene-bar")
        self.player_box = w.Box()
        self.video_path: str | None = None
        super().__init__([self.label, w.VBox([self.status, self.bar]), self.player_box],
                         layout=w.Layout(align_items="center", gap="12px", padding="4px 0",
                                         margin="0 0 6px 0", border_bottom="1px solid #e0e0e0"))
        self.add_class("wan-nb-scene-row")
        self.set_state("pending", 0.0)

    def set_state(self, status: str, progress: float) -> None:
        self.state = status
        self.status.value = (f"<span class='wan-nb-scene-status' style='color:{STATUS_COLOR.get(status, '#777')}'>"
                             f"{STATUS_TEXT.get(status, status)}</span>")
        self.bar.value = max(0.0, min(100.0, float(progress)))
        self.bar.bar_style = BAR_STYLE.get(status, "")

    def show_video(self, path: str) -> None:
        if path == self.video_path:
            return
        self.video_path = path
        try:
            player: w.Widget = VideoPlayer.from_file(path, filename=f"scene_{self.index:02d}.mp4",
                                                     display_width=self.display_width, autoplay=False)
        except (FileNotFoundError, ValueError) as exc:
            player = w.HTML(f"<i>{html.escape(str(exc))}</i>")
        self.player_box.children = (player,)


def _step_line(step: str, message: str) -> str:
    """``step · message``, without saying the same thing twice ("complete · Storyboard complete!")
    or leaving a separator with nothing after it."""
    shown = html.escape(step)
    if not message or step.lower() in message.lower():
        return f"<span class='wan-nb-step'>{html.escape(message or step)}</span>"
    return f"<span class='wan-nb-step'>{shown}</span> · {html.escape(message)}"


class StoryboardPanel(w.VBox):
    """Live view of a storyboard: overall bar and message, scene rows, the final video."""

    def __init__(self, source: Any, *, display_width: int = 160, max_rate: float = 10.0, **kwargs: Any) -> None:
        board = _board_of(source)
        self.board = board
        self.storyboard_id = board.id
        self._lock = threading.RLock()
        self._pending: list[Event] = []
        self.status = "pending"
        self.final_path: str | None = None
        self.title = w.HTML(f"<b>Storyboard</b> <code>{html.escape(board.id)}</code> · {len(board.scenes)} "
                            f"scene(s) · {board.transition} · {board.frames} frames @ {board.fps:g} fps")
        self.overall = w.FloatProgress(value=0.0, min=0.0, max=100.0, description="Overall",
                                       bar_style="info", layout=w.Layout(width="60%", min_width="200px"))
        self.overall.add_class("wan-nb-overall")
        self.overall_text = w.HTML("<b>0 %</b>")
        self.overall_text.add_class("wan-nb-overall-text")
        self.message = w.HTML("<i>not started</i>")
        self.message.add_class("wan-nb-message")
        self.rows = [_SceneRow(i, scene.prompt, frames, display_width)
                     for i, (scene, frames) in enumerate(zip(board.scenes, board.scene_frames), 1)]
        self.final_box = w.VBox()
        # Reaches the storyboard through the Jupyter server too: board.run() keeps the kernel busy.
        self.cancel_button = CancelButton(task_id=board.id, tooltip="Stop the current scene and skip the rest",
                                          layout=w.Layout(display="none"))
        self.cancel_button.on_click(lambda _: board.cancel())
        # Rows a few pixels apart with a rule between them: scene rows that touch read as one block.
        scenes = w.VBox(self.rows, layout=w.Layout(margin="6px 0"))
        super().__init__([self.title, w.HBox([self.overall, self.overall_text, self.cancel_button],
                                             layout=w.Layout(align_items="center", gap="6px")),
                          self.message, scenes, self.final_box], **kwargs)
        self.add_class("wan-nb-storyboard")
        self.throttle = Throttle(self._render, rate=max_rate)
        self._latest: Event | None = None
        # Every event of this storyboard id, past and future runs (resume) alike.
        self._unsubscribe = board.gen.subscribe(self._on_event, task_id=board.id,
                                                types=[EventType.STORYBOARD_PROGRESS], replay=True)

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._latest = event
            inner = event.data.get("data") or {}
            # Players are added at once, not throttled: a scene is announced only once.
            if inner.get("scene_video") and inner.get("scene_index"):
                self.rows[int(inner["scene_index"]) - 1].show_video(str(inner["scene_video"]))
        # Outside our lock: the throttle's timer thread takes the throttle's lock and then ours
        # (in _render), so taking them here in the other order could deadlock the two threads.
        if event.is_terminal:
            self.throttle.flush()
        else:
            self.throttle.request()

    def _render(self) -> None:
        with self._lock:
            event = self._latest
            if event is None:
                return
            data = event.data
            inner = data.get("data") or {}
            status, step = data.get("status"), data.get("step")
            self.overall.value = float(data.get("progress", 0.0))
            self.overall_text.value = f"<b>{self.overall.value:.0f} %</b>"
            self.message.value = _step_line(str(step), str(data.get("message", "")))
            for row, state in zip(self.rows, inner.get("scene_states") or ()):
                row.set_state(state.get("status", "pending"), state.get("progress", 0.0))
            for row, path in zip(self.rows, inner.get("scene_videos") or ()):
                row.show_video(str(path))
            if step == "complete" and status == "completed":
                self.status = "completed"
                self.overall.bar_style = "success"
                self._show_final(str(inner.get("final_video_path")))
            elif status in ("failed", "cancelled"):
                self.status = status
                self.overall.bar_style = "danger" if status == "failed" else "warning"
            else:
                self.status = "running"
                self.overall.bar_style = "info"
                self.final_box.children = ()
            self.cancel_button.layout.display = "" if self.status == "running" else "none"

    def _show_final(self, path: str) -> None:
        if self.final_path == path and self.final_box.children:
            return
        self.final_path = path
        try:
            player: w.Widget = VideoPlayer.from_file(path, filename=f"{self.storyboard_id}.mp4", display_width=384)
        except (FileNotFoundError, ValueError) as exc:
            player = w.HTML(f"<i>{html.escape(str(exc))}</i>")
        self.final_box.children = (w.HTML("<b>Final video</b>"), player)

    def close(self) -> None:
        self._unsubscribe()
        super().close()

    def __repr__(self) -> str:
        states = ", ".join(row.state for row in self.rows)
        return f"StoryboardPanel({self.storyboard_id!r}, {self.status}, scenes: {states})"


def show_storyboard(source: Any, stream: TextIO | None = None) -> Any:
    """Display the storyboard panel (a text summary outside Jupyter)."""
    from ._env import display as _display, widgets_available

    if widgets_available():
        return _display(StoryboardPanel(source))
    board = _board_of(source)
    run = getattr(board, "current", None)
    out = stream or sys.stdout
    out.write(f"{board!r}\n")
    for index, (scene, frames) in enumerate(zip(board.scenes, board.scene_frames), 1):
        status = run.scene_status[index - 1] if run is not None else "pending"
        out.write(f"  scene {index}: {status:<9} {frames:>3} frames  {scene.prompt}\n")
    if run is not None:
        out.write(f"  {run.status}: {run.progress:.0f}% {run.message}\n")
    return None


class StoryboardResultView(w.VBox):
    """A finished storyboard: the final video, and each scene's video under it."""

    def __init__(self, result: Any, *, display_width: int = 384, scene_width: int = 160, **kwargs: Any) -> None:
        self.result = result

        def player(path: Any, name: str, width: int) -> w.Widget:
            try:
                return VideoPlayer.from_file(path, filename=name, display_width=width, autoplay=False)
            except (FileNotFoundError, ValueError) as exc:
                return w.HTML(f"<i>{html.escape(str(exc))}</i>")

        self.final_player = player(result.final_video_path, f"{result.storyboard_id}.mp4", display_width)
        scenes = [w.VBox([w.HTML(f"<b>Scene {n}</b>"), player(path, f"scene_{n:02d}.mp4", scene_width)])
                  for n, path in enumerate(result.scene_videos, 1)]
        summary = w.HTML(f"<b>Final video</b> · {len(result.scene_videos)} scene(s) · {result.frames} frames · "
                         f"{result.duration_s:.2f} s<br><span style='font-size:12px;opacity:.7'>"
                         f"{html.escape(str(result.final_video_path))}</span>")
        super().__init__([summary, self.final_player, w.HBox(scenes, layout=w.Layout(gap="8px"))], **kwargs)
        self.add_class("wan-nb-storyboard-result")


def show_storyboard_result(result: Any, stream: TextIO | None = None) -> Any:
    """Display a finished storyboard's videos (paths as text outside Jupyter)."""
    from ._env import display as _display, widgets_available

    if widgets_available():
        return _display(StoryboardResultView(result))
    out = stream or sys.stdout
    out.write(f"{result!r}\nfinal: {result.final_video_path}\n")
    for n, path in enumerate(result.scene_videos, 1):
        out.write(f"scene {n}: {path}\n")
    return None
