"""``file_sha256``: what says a file is still the one a run used (a LoRA, a GGUF file, a user's video).

The one owner of that rule: recipes, kept inputs and rerun checks all hash files through here.
Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading

__all__ = ["file_sha256"]

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process.

    A file in the Hugging Face cache is a link to ``blobs/<sha256>`` (for LFS files): that name
    is the hash, so a multi-GB LoRA from the Hub costs nothing to identify.
    """
    real = os.path.realpath(path)
    stat = os.stat(real)
    name = os.path.basename(real)
    if _HEX64.match(name) and os.path.basename(os.path.dirname(real)) == "blobs":
        return name
    key = (real, stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _hash_cache.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value
