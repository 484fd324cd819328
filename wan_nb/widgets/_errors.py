"""wan_nb's errors in a notebook: the message first, the library's internals hidden.

A user error (an unknown model, no GPU, a bad argument, a failed run) used to arrive as 3-5
frames of wan_nb and diffusers internals with the message at the bottom, sometimes repeated by
chained exceptions. In an IPython kernel this handler shows instead the error's type and message,
then the one line of the user's own code that raised it. Exceptions that are not wan_nb's, or that
look like a bug in wan_nb (anything but the argument and run errors below, raised from inside
the package), keep IPython's full traceback; ``WAN_NB_TRACEBACKS=1`` shows it for ours too.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["install_error_display", "is_user_error", "short_error"]

PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
# Plain exception types that wan_nb's own checks raise about what the user passed.
_CHECK_TYPES = (ValueError, TypeError, FileNotFoundError)
_RED, _DIM, _RESET = "\x1b[0;31m", "\x1b[2m", "\x1b[0m"


def _in_package(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(PACKAGE_DIR + os.sep)


def is_user_error(error: BaseException) -> bool:
    """True for an error wan_nb raised about the user's input or run (shown short)."""
    if type(error).__module__.startswith("wan_nb."):
        return True   # every exception class wan_nb defines is about its use, not a bug
    frames = traceback.extract_tb(error.__traceback__)
    return isinstance(error, _CHECK_TYPES) and bool(frames) and _in_package(frames[-1].filename)


def short_error(error: BaseException) -> list[str]:
    """``Type: message`` and the user's line that led to it (IPython's structured traceback form)."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if not _in_package(f.filename) and "site-packages" not in f.filename]
    lines = [f"{_RED}{type(error).__name__}{_RESET}: {error}"]
    if mine:
        call = mine[-1]
        lines.append(f"{_DIM}  raised by: {(call.line or '').strip()}   (line {call.lineno}; "
                     f"WAN_NB_TRACEBACKS=1 shows wan_nb's internals){_RESET}")
    return lines


def _handler(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> Any:
    if os.environ.get("WAN_NB_TRACEBACKS") == "1" or not is_user_error(value):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    stb = short_error(value)
    shell._showtraceback(etype, value, stb)   # noqa: SLF001 -- IPython's documented hook for a custom traceback
    return None


def install_error_display() -> bool:
    """Show wan_nb's errors short in the running IPython kernel (once; a handler the user set
    stays). Returns True when installed."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    if shell.custom_exceptions and getattr(shell, "_wan_nb_errors", False) is False:
        return False   # someone else's handler: leave it
    shell.set_custom_exc((Exception,), _handler)
    shell._wan_nb_errors = True
    return True
