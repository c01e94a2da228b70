"""A request class whose multipart parser streams the uploaded file straight into storage."""

from __future__ import annotations

from typing import IO, cast

from flask import Request

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


def upload_writer(request: Request) -> UploadSink | None:
    writer: UploadSink | None = request.environ.get(UPLOAD_WRITER)
    return writer
