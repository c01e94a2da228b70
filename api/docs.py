"""The OpenAPI document, generated from the blueprints' schemas, with Swagger UI and ReDoc
served from files installed with the project (drf-spectacular-sidecar ships both builds), so
the docs work on a host with no internet access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import drf_spectacular_sidecar
from flask import Blueprint, Flask, Response, send_from_directory
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api.errors import http_error_body
from api.schemas import Error

ASSETS = Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar"
ASSET_PREFIX = "/api/docs-assets"

assets = Blueprint("docs_assets", __name__)


@assets.get(f"{ASSET_PREFIX}/<path:filename>")
def asset(filename: str) -> Response:
    response = send_from_directory(ASSETS, filename, max_age=86400)
    return response


class PipelineApi(Api):
    """flask-smorest, with errors in the service's one shape."""

    ERROR_SCHEMA = Error

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        body, status = http_error_body(error)
        headers = dict(getattr(error, "data", None) or {}).get("headers") or {}
        return body, status, headers


def init_docs(app: Flask) -> PipelineApi:
    app.config.update(
        API_TITLE="whisper-pipeline",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{ASSET_PREFIX}/swagger-ui-dist/",
        # No call-outs: Swagger UI would otherwise send the document to an online validator.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        OPENAPI_REDOC_PATH="redoc",
        OPENAPI_REDOC_URL=f"{ASSET_PREFIX}/redoc/bundles/redoc.standalone.js",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Self-hosted speech-to-text: upload audio or video, follow the job, "
                "download the transcript. Every error is JSON: {\"error\": {\"code\", \"message\"}}.",
            },
        },
    )
    app.register_blueprint(assets)
    return PipelineApi(app)
