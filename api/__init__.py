"""The upload service. ``create_app`` is the Flask app factory (``gunicorn 'api:create_app()'``).

The factory's imports are deferred to the call, so that importing a sibling module (the
command-line client, ``api.cli``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from pipeline.settings import Settings


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` is a ``Settings``, or overrides of the environment's settings."""
    from api.app import build_app

    return build_app(config)
