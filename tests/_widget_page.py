"""Draw one of wan_nb's anywidget front ends (``wan_nb/widgets/static/*.js``) in headless
Chromium, fed the traits of a real Python widget.

Far quicker than a JupyterLab page: the module is imported as anywidget imports it (an ES module
whose default export has ``render({model, el})``) and handed a model object that answers
``get``/``on``/``off``/``set``/``save_changes`` from the widget's synced state, which is what
anywidget's model does in Lab. What a Lab page adds (comms, the widget manager) is covered by the
slow tests in this folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

_HARNESS = """async ([source, css, state]) => {
  const listeners = {};
  const model = {
    get: (name) => state[name],
    set: (name, value) => { state[name] = value; (listeners['change:' + name] || []).forEach((f) => f()); },
    on: (name, f) => { (listeners[name] = listeners[name] || []).push(f); },
    off: (name, f) => { listeners[name] = (listeners[name] || []).filter((g) => g !== f); },
    save_changes: () => {}, send: () => {},
  };
  window.wanModel = model;
  const style = document.createElement('style');
  style.textContent = css;
  document.head.appendChild(style);
  const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
  const module = await import(url);
  const host = document.createElement('div');
  host.id = 'host';
  document.body.appendChild(host);
  await module.default.render({model, el: host});
}"""


def synced_state(widget: Any) -> dict[str, Any]:
    """The widget's traits as the browser receives them (JSON round trip)."""
    names = [name for name in widget.traits(sync=True) if not name.startswith("_")]
    return json.loads(json.dumps({name: getattr(widget, name) for name in names}, default=str))


def _text(asset: Any) -> str:
    """anywidget keeps ``_esm``/``_css`` as the file's text (or its path before reading it)."""
    text = str(asset or "")
    if "\n" not in text and text.endswith((".js", ".css")) and Path(text).is_file():
        return Path(text).read_text()
    return text


def draw_widget(page, widget: Any, width: int = 900) -> None:
    """Render ``widget``'s front end into ``page`` (an empty Chromium page)."""
    page.set_viewport_size({"width": width, "height": 900})
    page.set_content("<!doctype html><html><body style='margin:8px;font-family:sans-serif'></body></html>")
    source, css = _text(getattr(widget, "_esm", "")), _text(getattr(widget, "_css", ""))
    page.evaluate(_HARNESS, [source, css, synced_state(widget)])


def chromium_page():
    """A context manager yielding a fresh headless Chromium page."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from contextlib import contextmanager

    from playwright.sync_api import sync_playwright

    @contextmanager
    def opened():
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield browser.new_page()
            finally:
                browser.close()

    return opened()
