"""The terminal front end: the wan-nb command and its text progress."""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``wan-nb`` command (the console script's entry point)."""
    from wan_nb.cli.commands import main as run

    return run(argv)
