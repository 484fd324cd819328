"""Replace a small file so that a reader sees the old content or the new, never half of either.

Run folders, the queue file, the relay's producer files, the history index and the timing cache
are all read by other processes (servers, later kernels) while they are being rewritten. Standard
library only: the Jupyter server imports this through ``relay.protocol`` and ``history``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Callable


def replace_bytes(path: Path, write: Callable[[BinaryIO], None], *, private: bool = False,
                  durable: bool = False) -> int:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``; returns
    the bytes written.

    ``private``: readable by this user only (0600), for files that hold control keys; otherwise
    the usual umask applies. ``durable``: fsync before the rename, for files whose loss after a
    crash would lose work (the queue, a checkpoint). On any failure (a full disk) the temporary
    file is removed and ``path`` keeps its previous content. The temporary name is unique per
    process and thread, so two writers of one file never share one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            size = out.tell()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


def replace_text(path: Path, text: str, *, private: bool = False, durable: bool = False) -> None:
    """:func:`replace_bytes` for text, UTF-8 encoded."""
    data = text.encode("utf-8")
    replace_bytes(path, lambda out: out.write(data), private=private, durable=durable)
