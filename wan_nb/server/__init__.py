"""The wan_nb Jupyter server extension: every wan_nb task of this user, over REST, SSE and
WebSocket. Importing this package is cheap; the extension app loads only in a server."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import WanNbExtension

    return [{"module": "wan_nb.server.app", "app": WanNbExtension}]
