"""The OpenAPI document, generated from the blueprints' schemas, with Swagger UI and ReDoc
served from files installed with the project, so the docs work on a host with no internet
access. swagger-ui-bundle ships Swagger UI's dist folder and mkdocs-redoc-tag ReDoc's standalone
build; neither brings a web framework along."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, send_from_directory
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api.errors import http_error_body
from api.schemas import Error

ASSET_PREFIX = "/api/docs-assets"


def asset_folders() -> dict[str, Path]:
    """Where each UI's built files lie in the installed packages."""
    from swagger_ui_bundle import swagger_ui_path

    return {
        "swagger-ui": Path(str(swagger_ui_path)),
        "redoc": Path(str(files("mkdocs_redoc_tag") / "redoc" / "javascripts")),
    }


assets = Blueprint("docs_assets", __name__)


@assets.get(f"{ASSET_PREFIX}/<ui>/<path:filename>")
def asset(ui: str, filename: str) -> Response:
    folder = asset_folders().get(ui)
    if folder is None:
        abort(404)
    return send_from_directory(folder, filename, max_age=86400)


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
        OPENAPI_SWAGGER_UI_URL=f"{ASSET_PREFIX}/swagger-ui/",
        # No call-outs: Swagger UI would otherwise send the document to an online validator.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        OPENAPI_REDOC_PATH="redoc",
        OPENAPI_REDOC_URL=f"{ASSET_PREFIX}/redoc/redoc.standalone.js",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Self-hosted speech-to-text: upload audio or video, follow the job, "
                "download the transcript. Every error is JSON: {\"error\": {\"code\", \"message\"}}.",
            },
        },
    )
    app.register_blueprint(assets)
    return PipelineApi(app)
