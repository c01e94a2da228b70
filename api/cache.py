"""Operators' view of the transcript cache."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.state import state

bp = Blueprint("cache", __name__, url_prefix="/api")


@bp.get("/cache-stats")
def cache_stats() -> Response:
    return jsonify(state().cache.stats())


@bp.post("/cache/clear")
def cache_clear() -> Response:
    removed = state().cache.clear()
    return jsonify({"cleared": removed})
