"""The extension app: traitlets configuration and wiring, nothing else (logic is in the hub)."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from pathlib import Path

from traitlets import Float, Int, List, TraitError, Unicode, default, validate

from wan_nb.runs.layout import default_runs_dir

from . import input_files, runs_dirs, steering, webhook
from .handlers import handlers
from .hub import Hub


class WanNbExtension(ExtensionApp):
    """Serves wan_nb progress: ``<base_url>wan-nb/api/...`` (see ``openapi.json``)."""

    name = "wan_nb"
    load_other_extensions = True

    history_size = Int(20_000, config=True,
                       help="Events kept in memory per running task (finished tasks keep a "
                            "summary; full replays come from the task's journal).")
    max_tasks = Int(2_000, config=True, help="Tasks remembered (oldest finished ones are forgotten).")
    max_tasks_with_events = Int(200, config=True,
                                help="Finished tasks whose events stay in memory.")
    global_history_size = Int(20_000, config=True,
                              help="Events of all tasks kept for resuming the all-tasks stream.")
    client_buffer = Int(1_000, config=True,
                        help="Events queued for a slow client before intermediate progress is "
                             "coalesced; at 10x this, the client is disconnected (it can resume).")
    heartbeat_interval = Float(10.0, config=True,
                               help="Seconds between SSE comment heartbeats (at most 15).")
    scan_interval = Float(0.5, config=True,
                          help="Seconds between scans of the runtime directory for producers "
                               "(new processes, dead ones: a lost task is marked within 2 scans).")
    vram_interval = Float(1.0, config=True,
                          help="Seconds between VRAM samples while a client subscribes to 'vram'.")
    memory_trim_interval = Float(1.0, config=True,
                                 help="Seconds without events after which the server returns "
                                      "freed memory to the OS (glibc malloc_trim; also every "
                                      "10 s while events keep coming). 0 disables it.")
    backlog_bytes = Int(32 * 1024 * 1024, config=True,
                        help="Replayed bytes one connection may have waiting (a resume, a late "
                             "subscription); past it the connection is closed (WebSocket 1013) "
                             "and the client resumes from where it got to.")
    runs_dirs = List(Unicode(), config=True,
                     help="Folders whose finished runs GET wan-nb/api/tasks lists (default: "
                          "$WAN_NB_RUNS_DIR, else <root_dir>/wan_nb_runs); every runs folder a "
                          "producer announces is added, and remembered across restarts.")

    @default("runs_dirs")
    def _default_runs_dirs(self):
        return [str(default_runs_dir(getattr(self.serverapp, "root_dir", None) or None))]

    webhook_url = Unicode("", config=True,
                          help="POST a JSON summary of each task's end here (ntfy, Slack, Discord...; '' = off)")
    webhook_timeout = Float(5.0, config=True, help="Seconds one webhook POST may take.")
    webhook_retries = Int(3, config=True, help="Retries of a failed webhook POST (pauses of 1, 2, 4... s).")
    producer_dir = Unicode("", config=True,
                           help="Where producers advertise themselves (default: the Jupyter "
                                "runtime directory).")

    @validate("heartbeat_interval")
    def _check_heartbeat(self, proposal):
        value = proposal["value"]
        if not 0 < value <= 15:
            raise TraitError(f"heartbeat_interval={value}: choose 0 < seconds <= 15")
        return value

    @validate("memory_trim_interval")
    def _check_not_negative(self, proposal):
        if proposal["value"] < 0:
            raise TraitError(f"memory_trim_interval={proposal['value']}: choose >= 0 seconds (0: off)")
        return proposal["value"]

    @validate("backlog_bytes")
    def _check_backlog(self, proposal):
        if proposal["value"] < 64 * 1024:
            raise TraitError(f"backlog_bytes={proposal['value']}: choose at least 65536")
        return proposal["value"]

    @validate("webhook_url")
    def _check_webhook_url(self, proposal):
        if proposal["value"] and not proposal["value"].startswith(("http://", "https://")):
            raise TraitError(f"webhook_url={proposal['value']!r}: give an http:// or https:// URL, or '' for none")
        return proposal["value"]

    @validate("scan_interval", "vram_interval")
    def _check_positive(self, proposal):
        if proposal["value"] <= 0:
            raise TraitError(f"{proposal['trait'].name} must be > 0 seconds")
        return proposal["value"]

    def initialize_settings(self) -> None:
        self.hub = Hub(
            runtime_dir=self.producer_dir or self.serverapp.runtime_dir,
            base_url=self.serverapp.base_url,
            history_size=self.history_size,
            max_tasks=self.max_tasks,
            max_tasks_with_events=self.max_tasks_with_events,
            global_history_size=self.global_history_size,
            client_buffer=self.client_buffer,
            scan_interval=self.scan_interval,
            heartbeat_interval=self.heartbeat_interval,
            vram_interval=self.vram_interval,
            memory_trim_interval=self.memory_trim_interval,
            backlog_bytes=self.backlog_bytes,
            runs_dirs=self.runs_dirs,
            remembered_file=Path(self.serverapp.data_dir) / "wan_nb" / "runs_dirs.json",
            logger=self.log,
        )
        self.webhook = webhook.attach(self.hub.store, webhook.Webhook(
            self.webhook_url, timeout=self.webhook_timeout, retries=self.webhook_retries,
            logger=self.log)) if self.webhook_url else None
        self.settings.update({"wan_nb_hub": self.hub})
        IOLoop.current().add_callback(self.hub.start)

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers() + steering.handlers() + input_files.handlers() + runs_dirs.handlers())

    async def stop_extension(self) -> None:
        self.hub.stop()
        if self.webhook is not None:
            self.webhook.close()
