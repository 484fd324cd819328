"""The Cancel button of the progress panels: it works even while the kernel is busy.

A plain ``ipywidgets.Button`` sends its click to the kernel as a comm message, and the kernel
handles it only when its main thread is free. That is the case for ``gen.submit(...)``, but a
foreground ``gen.generate(...)`` keeps the main thread waiting for the video, so the click would
be handled only after the generation it was meant to stop. This button therefore does two
things in the browser when clicked:

1. it sends the click to the kernel (handled at once when the kernel is free, else later — a
   late ``cancel()`` on a finished task does nothing), and
2. it posts ``wan-nb/api/tasks/{id}/cancel`` to the Jupyter server that serves the page, which
   relays the request to the process running the task (its relay thread is never blocked).
   Where there is no such server (VS Code, Colab) the request fails quietly and (1) remains.

An anywidget with plain JavaScript (``static/cancel_button.js``), no build step.
"""

from __future__ import annotations

from typing import Any, Callable

import anywidget
import traitlets

from .vram_plot import STATIC

__all__ = ["CancelButton"]


class CancelButton(anywidget.AnyWidget):
    _esm = STATIC / "cancel_button.js"
    _css = STATIC / "cancel_button.css"

    task_id = traitlets.Unicode("").tag(sync=True)        # what the server route cancels
    # The server route a click posts to (cancel, pause or resume: the Pause button is this
    # widget too), the label shown while the request is out, and the Font Awesome icon.
    action = traitlets.Unicode("cancel").tag(sync=True)
    pending = traitlets.Unicode("Cancelling…").tag(sync=True)
    icon = traitlets.Unicode("stop").tag(sync=True)
    description = traitlets.Unicode("Cancel").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    button_style = traitlets.Unicode("warning").tag(sync=True)
    tooltip = traitlets.Unicode("Stop this generation after the current step").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._click_handlers: list[Callable[[CancelButton], Any]] = []
        self.on_msg(self._handle_message)

    def on_click(self, callback: Callable[["CancelButton"], Any]) -> None:
        """Call ``callback(button)`` when the button is clicked (like ``ipywidgets.Button``)."""
        self._click_handlers.append(callback)

    def click(self) -> None:
        """Run the click handlers: what a browser click does in the kernel."""
        for handler in list(self._click_handlers):
            handler(self)

    def _handle_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "click":
            self.click()
