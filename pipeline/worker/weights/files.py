"""Writing model files that several processes share, so that none ever reads half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

COPY_BUFFER = 1 << 20


@contextmanager
def atomic_write(target: Path) -> Iterator[IO[bytes]]:
    """A temp file beside ``target``, renamed over it only when fully written.

    The rename is atomic within one file system, so a concurrent reader sees either no file or a
    complete one, and two processes writing the same file at once both succeed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private; a model cache is shared by the service's processes.
        temp.chmod(0o644)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def copy_atomically(source: Path, target: Path) -> None:
    with atomic_write(target) as handle, source.open("rb") as src:
        shutil.copyfileobj(src, handle, COPY_BUFFER)
