"""Operators' view of the transcript cache."""

from __future__ import annotations

from typing import Any

from api import schemas
from api.auth import require_admin
from api.blueprint import Blueprint
from api.state import state

bp = Blueprint("cache", __name__, url_prefix="/api",
               description="The transcript cache (admin keys only, where keys are set).")
ADMIN_ONLY = {"schema": schemas.Error, "description": "a key that is not one of ADMIN_API_KEYS"}


@bp.get("/cache-stats")
@bp.response(200, schemas.CacheStats)
@bp.alt_response(403, **ADMIN_ONLY)
def cache_stats() -> dict[str, Any]:
    """Hits, misses, hit rate, entries and bytes."""
    require_admin("read the cache's statistics")
    return state().cache.stats()


@bp.post("/cache/clear")
@bp.response(200, schemas.Cleared)
@bp.alt_response(403, **ADMIN_ONLY)
def cache_clear() -> dict[str, Any]:
    """Empty the cache (Redis and, when enabled, the disk copy)."""
    require_admin("clear the cache")
    return {"cleared": state().cache.clear()}
