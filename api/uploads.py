"""A request class whose multipart parser writes the uploaded file straight to its final place."""

from __future__ import annotations

from pathlib import Path
from typing import IO, cast

from flask import Request

from pipeline.uploads import HashingWriter

UPLOAD_TARGET = "whisper_pipeline.upload_target"
UPLOAD_WRITER = "whisper_pipeline.upload_writer"


class UploadRequest(Request):
    """The first file part goes to the path the view chose (``UPLOAD_TARGET`` in the environ),
    hashed while it streams; Werkzeug's default would spool it to a temporary file first and
    the whole upload would be read twice.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        target: Path | None = self.environ.get(UPLOAD_TARGET)
        if target is None or UPLOAD_WRITER in self.environ:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        writer = HashingWriter(target)
        self.environ[UPLOAD_WRITER] = writer
        return cast(IO[bytes], writer)


def upload_writer(request: Request) -> HashingWriter | None:
    writer: HashingWriter | None = request.environ.get(UPLOAD_WRITER)
    return writer
