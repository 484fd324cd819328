"""``wan-nb/api/runs-dirs``: which runs folders this server lists finished runs from, and why
(``configured``: the ``runs_dirs`` setting; ``announced``: a live producer's; ``remembered``:
announced before, kept in ``runs_dirs.json``). ``DELETE ?path=`` forgets a remembered one (its
files stay); the sidebar shows the list and offers the removal."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..relay.protocol import API_ROOT
from .handlers import WanNbAPIHandler

__all__ = ["handlers"]


class RunsDirsHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        hub = self.hub
        why: dict[str, str] = {}
        for source, dirs in (("configured", hub.configured_dirs), ("announced", hub.discovery.announced_dirs()),
                             ("remembered", list(hub.discovery.remembered))):
            for directory in dirs:
                why.setdefault(str(directory), source)
        self.write_json({"runs_dirs": [{"path": path, "source": source} for path, source in why.items()]})

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        path = self.get_query_argument("path", "")
        if not path:
            raise web.HTTPError(400, "give ?path= the runs folder to forget")
        if not self.hub.discovery.remembered.forget(path):
            raise web.HTTPError(404, f"{path!r} is not a remembered runs folder (configured or live ones stay)")
        await self.hub.listing.refresh(self.hub.runs_dirs())
        self.set_status(204)
        self.finish()


def handlers() -> list[tuple[str, type]]:
    return [(rf"{API_ROOT}/runs-dirs", RunsDirsHandler)]
