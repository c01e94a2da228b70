"""sha256 checks of model files, hashed once per process for each version of a file.

A packaged model is 75 to 145 MB: hashing it takes a noticeable fraction of a second, so the
digest of a file is remembered under its path, size and modification time. A file rewritten in
place keeps neither its mtime nor (usually) its size, so it is hashed again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelIntegrityError

log = logging.getLogger(__name__)

_READ_BUFFER = 1 << 20


@dataclass(frozen=True)
class ExpectedFile:
    """A file as its release shipped it: where it lies in its folder, its size and sha256."""

    name: str
    size: int
    sha256: str


# (resolved path, size, mtime_ns) -> sha256: the file versions already hashed in this process.
_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()
# One lock per path, so that threads loading the same model hash it once and others do not wait.
_path_locks: dict[str, threading.Lock] = {}


def _key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _path_lock(path: str) -> threading.Lock:
    with _digests_lock:
        return _path_locks.setdefault(path, threading.Lock())


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), computed at most once per version of the file in this process."""
    key = _key(path)
    with _path_lock(key[0]):
        with _digests_lock:
            known = _digests.get(key)
        if known is not None:
            return known
        started = time.monotonic()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_READ_BUFFER):
                digest.update(chunk)
        # Keyed by the stat taken before reading: a file that changed meanwhile is hashed again.
        with _digests_lock:
            _digests[key] = digest.hexdigest()
        log.debug("sha256 of %s (%d bytes) in %.2f s", path, key[1], time.monotonic() - started)
        return digest.hexdigest()


def remember(path: Path, sha256: str) -> None:
    """Record the digest of a file this process has just written, so it is not read back."""
    with _digests_lock:
        _digests[_key(path)] = sha256


def verify(path: Path, expected: ExpectedFile, origin: str, remedy: str) -> None:
    """Raise ModelIntegrityError unless ``path`` has the expected size and sha256.

    ``origin`` names where the file comes from (a package and release) and ``remedy`` what the
    operator should do, for the error's message.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ModelIntegrityError(f"{origin} lacks {expected.name} (looked at {path}). {remedy}") from None
    if size != expected.size:
        raise ModelIntegrityError(
            f"{path} ({origin}) is {size} bytes, not the {expected.size} it was released with. {remedy}"
        )
    found = sha256_of(path)
    if found != expected.sha256:
        raise ModelIntegrityError(
            f"{path} ({origin}) has sha256 {found}, not the released {expected.sha256}: the file is "
            f"damaged or was replaced. {remedy}"
        )
