"""A grid as one standalone HTML page: the notebook's lockstep player, its state and the videos.

The page runs the widget's own script (``static/lockstep.js``) with a small stand-in for
anywidget's model, so it plays the same way as in the notebook, with no server and no kernel.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from .lockstep import STATIC, grid_state

__all__ = ["to_html"]


def to_html(grid: Any, path: Any, *, inline: bool = False, tile_width: int = 192,
            timeout: float | None = None) -> Path:
    """One page with the lockstep player. The videos go in ``<name>_files/`` beside it, or into
    the page itself with ``inline=True`` (one file to send, base64: a third larger)."""
    grid.results(timeout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    folder = path.with_name(path.stem + "_files")
    for cell in grid.cells:
        video = Path(cell.task.result().video_path)
        if inline:
            urls.append("data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode("ascii"))
        else:
            folder.mkdir(exist_ok=True)
            target = folder / f"{cell.task.id}.mp4"
            if not target.exists():
                shutil.copyfile(video, target)
            urls.append(f"{folder.name}/{target.name}")
    state = grid_state(grid)
    state.update(videos=urls, interactive=False, tile_width=tile_width)
    script = (STATIC / "lockstep.js").read_text()
    css = (STATIC / "lockstep.css").read_text()
    page = _PAGE.format(title=_escape(f"wan_nb grid: {grid.prompt}"), css=css,
                        state=_script_json(state),
                        script=script.replace("</", "<\\/"))
    path.write_text(page, encoding="utf-8")
    return path


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: every ``<`` written as ``\\u003c``, so no text in it
    (``</script>``, ``<!--<script>``, which makes the parser swallow the rest of the page) is markup."""
    return json.dumps(value, default=str).replace("<", "\\u003c")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


# The player is the notebook widget's own module, given a small stand-in for anywidget's model.
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:16px;background:#fff;color:#222}}{css}</style></head>
<body><div id="wan-nb-grid"></div>
<script type="application/json" id="wan-nb-grid-state">{state}</script>
<script type="text/plain" id="wan-nb-grid-player">{script}</script>
<script type="module">
const state = JSON.parse(document.getElementById("wan-nb-grid-state").textContent);
const handlers = {{}};
const model = {{
  get: (k) => state[k],
  set: (k, v) => {{ state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); }},
  save_changes: () => {{}}, send: () => {{}},
  on: (name, f) => {{ (handlers[name] = handlers[name] || []).push(f); }},
  off: (name, f) => {{ handlers[name] = (handlers[name] || []).filter((g) => g !== f); }},
}};
const source = document.getElementById("wan-nb-grid-player").textContent;
const player = await import(URL.createObjectURL(new Blob([source], {{ type: "text/javascript" }})));
player.default.render({{ model, el: document.getElementById("wan-nb-grid") }});
</script></body></html>
"""
