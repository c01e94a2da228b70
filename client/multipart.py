"""A multipart/form-data upload streamed from disk, with progress."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from urllib3.fields import RequestField

# Called with (bytes sent so far, total bytes) while an upload streams.
UploadProgress = Callable[[int, int], None]


class MultipartBody:
    """A multipart/form-data body that streams the file from disk in chunks.

    requests sends any object with ``read`` and ``__len__`` with a Content-Length header,
    reading it block by block, so the file is never held in memory and every block read
    reports progress.
    """

    def __init__(self, fields: Mapping[str, str], file_field: str, path: Path,
                 progress: UploadProgress | None = None) -> None:
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        head = b""
        for name, value in fields.items():
            part = RequestField(name=name, data=value)
            part.make_multipart()
            head += f"--{self.boundary}\r\n{part.render_headers()}".encode() + value.encode() + b"\r\n"
        file_part = RequestField(name=file_field, data=b"", filename=path.name)
        file_part.make_multipart(content_type="application/octet-stream")
        head += f"--{self.boundary}\r\n{file_part.render_headers()}".encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file_size = path.stat().st_size
        self._file: IO[bytes] = path.open("rb")
        self._stage = 0  # 0: head, 1: file, 2: tail, 3: done
        self._sent = 0
        self._progress = progress
        self.total = len(self._head) + self._file_size + len(self._tail)

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.total
        out = b""
        while len(out) < size and self._stage < 3:
            want = size - len(out)
            if self._stage == 0:
                out += self._head[:want]
                self._head = self._head[want:]
                if not self._head:
                    self._stage = 1
            elif self._stage == 1:
                chunk = self._file.read(want)
                out += chunk
                if len(chunk) < want:
                    self._stage = 2
            else:
                out += self._tail[:want]
                self._tail = self._tail[want:]
                if not self._tail:
                    self._stage = 3
        self._sent += len(out)
        if self._progress is not None and out:
            self._progress(self._sent, self.total)
        return out

    def close(self) -> None:
        self._file.close()
