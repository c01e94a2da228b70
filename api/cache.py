"""Operators' view of the transcript cache."""

from __future__ import annotations

from typing import Any

from api import schemas
from api.blueprint import Blueprint
from api.state import state

bp = Blueprint("cache", __name__, url_prefix="/api", description="The transcript cache.")


@bp.get("/cache-stats")
@bp.response(200, schemas.CacheStats)
def cache_stats() -> dict[str, Any]:
    """Hits, misses, hit rate, entries and bytes."""
    return state().cache.stats()


@bp.post("/cache/clear")
@bp.response(200, schemas.Cleared)
def cache_clear() -> dict[str, Any]:
    """Empty the cache (Redis and, when enabled, the disk copy)."""
    return {"cleared": state().cache.clear()}
