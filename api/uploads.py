"""A request class whose multipart parser streams the uploaded file straight into storage."""

from __future__ import annotations

import re
from typing import IO, cast

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from pipeline.errors import UploadTooLarge
from pipeline.uploads import UploadSink

UPLOAD_TARGET = "whisper_pipeline.upload_target"
UPLOAD_WRITER = "whisper_pipeline.upload_writer"


class UploadRequest(Request):
    """The first file part goes into the store, through the sink the view's hook prepared
    (``UPLOAD_TARGET`` in the environ: a callable that opens it), hashed while it streams;
    Werkzeug's default would spool it to a temporary file first and the whole upload would be
    read twice.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        open_sink = self.environ.get(UPLOAD_TARGET)
        if open_sink is None or UPLOAD_WRITER in self.environ:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        writer: UploadSink = open_sink()
        self.environ[UPLOAD_WRITER] = writer
        return cast(IO[bytes], writer)

    def _get_stream_for_parsing(self) -> IO[bytes]:
        self._parts = PartTracker(super()._get_stream_for_parsing())
        return cast(IO[bytes], self._parts)

    def _load_form_data(self) -> None:
        """Werkzeug refuses a form field over ``max_form_memory_size`` with a bare 413, which
        read as if the whole upload were over MAX_UPLOAD_MB; this one names the field and its
        limit."""
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            parts: PartTracker | None = getattr(self, "_parts", None)
            over_all = (self.max_content_length is not None and self.content_length is not None
                        and self.content_length > self.max_content_length)
            if parts is None or over_all:
                raise
            if self.max_form_parts is not None and parts.parts > self.max_form_parts:
                raise UploadTooLarge(f"The form has more than {self.max_form_parts} parts, more than "
                                     "this service reads.") from None
            if parts.name is not None and not parts.is_file and self.max_form_memory_size is not None:
                limit = self.max_form_memory_size
                raise UploadTooLarge(
                    f"The form field {parts.name[:64]!r} is larger than this service accepts "
                    f"({limit // 1000} kB a field; only the file may be large).", field=parts.name[:64]) from None
            raise


# A part's header as it passes: which field it is, and whether it is a file.
_DISPOSITION = re.compile(rb"content-disposition:[^\r\n]*", re.IGNORECASE)
_NAME = re.compile(rb';\s*name="([^"]*)"')
_TAIL = 4096  # longer than any part header a client sends; kept so a header split between reads is found


class PartTracker:
    """The request body as the form parser reads it, noting the last part header that went by:
    when the parser refuses a part as too large, that is the part, and its field is named."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.name: str | None = None
        self.is_file = False
        self.parts = 0
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        window = self._tail + data
        headers = _DISPOSITION.findall(window)
        # A header found again in the kept tail was counted at the last read.
        self.parts += len(headers) - len(_DISPOSITION.findall(self._tail))
        if headers:
            found = _NAME.search(headers[-1])
            self.name = found.group(1).decode("utf-8", "replace") if found else None
            self.is_file = b"filename" in headers[-1].lower()
        self._tail = window[-_TAIL:]
        return data


def upload_writer(request: Request) -> UploadSink | None:
    writer: UploadSink | None = request.environ.get(UPLOAD_WRITER)
    return writer
