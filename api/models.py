"""The models a request may name: OpenAI's ``/v1/models`` list, and ``/api/models`` with where
each is loaded (from the workers' heartbeats; this process never loads an engine itself).

The names are MODELS (``Settings.allowed_models``) plus ``whisper-1``, the alias the OpenAI route
reads as DEFAULT_MODEL. Any listed model runs on either engine; ``engine`` is the one a request
that does not choose gets (DEFAULT_ENGINE). OpenAI's ``created`` is a release date, which these
names do not carry here: it is 0.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from api import schemas
from api.auth import is_admin
from api.blueprint import Blueprint
from api.state import state
from pipeline.engine_registry import ENGINE_NAMES
from pipeline.errors import UnknownModel
from pipeline.settings import Settings
from pipeline.workers import live_workers

OPENAI_ALIAS = "whisper-1"
# Whisper's weights are OpenAI's, whichever engine runs them.
OWNER = "openai"

bp = Blueprint("models", __name__, description="The models a request may name.")


class ModelOut(ma.Schema):
    id = ma.fields.String(required=True)
    object = ma.fields.String(required=True, validate=ma.validate.Equal("model"))
    created = ma.fields.Integer(required=True, metadata={"description": "0: no release date is known"})
    owned_by = ma.fields.String(required=True)
    engine = ma.fields.String(required=True, metadata={"description": "the engine used when a request "
                                                        "names none (DEFAULT_ENGINE)"})
    engines = ma.fields.List(ma.fields.String(), required=True,
                             metadata={"description": "the engines that can run it"})
    english_only = ma.fields.Boolean(required=True, metadata={"description": "a .en model: English only"})
    default = ma.fields.Boolean(required=True, metadata={"description": "DEFAULT_MODEL (or its alias)"})
    alias_of = ma.fields.String(metadata={"description": "whisper-1 only: the model it stands for"})


class ModelList(ma.Schema):
    object = ma.fields.String(required=True, validate=ma.validate.Equal("list"))
    data = ma.fields.List(ma.fields.Nested(ModelOut), required=True)


class LoadedOut(ma.Schema):
    engine = ma.fields.String(required=True)
    device = ma.fields.String(required=True)
    compute_type = ma.fields.String(required=True)
    host = ma.fields.String(metadata={"description": "admin keys only, where keys are set"})
    pid = ma.fields.Integer(metadata={"description": "admin keys only, where keys are set"})


class ModelDetail(ModelOut):
    loaded = ma.fields.List(ma.fields.Nested(LoadedOut), required=True, metadata={
        "description": "each live worker process that holds it in memory"})
    devices = ma.fields.List(ma.fields.String(), required=True,
                             metadata={"description": "the devices it is loaded on (cpu, cuda)"})


class ModelDetailList(ModelList):
    data = ma.fields.List(ma.fields.Nested(ModelDetail), required=True)


def model_entries(settings: Settings) -> list[dict[str, Any]]:
    """The listed models in OpenAI's shape, with this service's extra fields."""
    def entry(name: str, model: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": OWNER,
                "engine": settings.default_engine, "engines": list(ENGINE_NAMES),
                "english_only": model.endswith(".en"), "default": model == settings.default_model}

    entries = [entry(name, name) for name in settings.allowed_models]
    alias = entry(OPENAI_ALIAS, settings.default_model) | {"alias_of": settings.default_model}
    return [*entries, alias]


def _loaded_models(workers: list[dict[str, Any]], *, with_hosts: bool) -> dict[str, list[dict[str, Any]]]:
    """Model name -> where it is loaded, from heartbeats' ``engine:model:device:compute_type``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for worker in workers:
        for key in worker.get("models") or []:
            engine, _, rest = str(key).partition(":")
            model, device, compute_type = [*rest.rsplit(":", 2), "", ""][:3]
            place: dict[str, Any] = {"engine": engine, "device": device, "compute_type": compute_type}
            if with_hosts:
                place |= {"host": str(worker.get("host", "")), "pid": int(worker.get("pid", 0))}
            found.setdefault(model, []).append(place)
    return found


@bp.get("/v1/models")
@bp.response(200, ModelList)
def list_models() -> dict[str, Any]:
    """The models a request may name, as OpenAI's ``models.list`` answers."""
    return {"object": "list", "data": model_entries(state().settings)}


@bp.get("/v1/models/<model_id>")
@bp.response(200, ModelOut)
@bp.alt_response(404, schema=schemas.Error, description="a model this service does not list")
def retrieve_model(model_id: str) -> dict[str, Any]:
    """One model, as OpenAI's ``models.retrieve`` answers."""
    settings = state().settings
    for entry in model_entries(settings):
        if entry["id"] == model_id:
            return entry
    raise UnknownModel(f"No model {model_id[:100]!r} here; the models are "
                       f"{', '.join(e['id'] for e in model_entries(settings))} (MODELS).", field="model")


@bp.get("/api/models")
@bp.response(200, ModelDetailList)
def models_detail() -> dict[str, Any]:
    """The same list, with where each model is loaded and on which device (from the workers'
    heartbeats). Host names and process ids: admin keys only, where keys are set."""
    st = state()
    loaded = _loaded_models(live_workers(st.redis), with_hosts=is_admin())
    data = []
    for entry in model_entries(st.settings):
        places = loaded.get(entry.get("alias_of", entry["id"]), [])
        data.append(entry | {"loaded": places, "devices": sorted({p["device"] for p in places})})
    return {"object": "list", "data": data}
