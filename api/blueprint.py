"""flask-smorest's Blueprint, able to read (and document) a multipart body of file and fields.

Its own locations document ``form`` and ``files`` as two request bodies, of which OpenAPI 3
allows one; ``form_and_files`` is both in one ``multipart/form-data`` body.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flask_smorest
from flask import Request
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict


class UploadParser(FlaskParser):
    def load_form_and_files(self, req: Request, schema: Any) -> Any:
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)

    __location_map__ = {  # noqa: RUF012 - webargs reads it as a class attribute
        **FlaskParser.__location_map__, "form_and_files": "load_form_and_files"}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = UploadParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "form_and_files": "multipart/form-data",
    }
