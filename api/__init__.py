"""The upload service: ``create_app`` is its Flask app factory (``gunicorn 'api:create_app()'``).

The web process only stores jobs and queues messages: nothing here, or in what it imports,
loads an engine (an import-linter contract in pyproject.toml holds it to that).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from api.errors import register_error_handlers
from api.events import EventHub
from api.limits import ClientLimits
from api.state import ApiState, init_state
from api.submission import UploadRequest
from pipeline.hygiene import check_redis_policy
from pipeline.logs import configure_logging, current_task
from pipeline.rabbitmq import build_broker
from pipeline.settings import Settings
from pipeline.stores import check_storage, open_stores

# Per API process: enough for every request in flight to find one at once, however many
# clients merely wait (a waiting stream holds none; the event hub holds one for the process).
REDIS_CONNECTIONS = 64


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` is a ``Settings``, or overrides of the environment's settings."""
    # Imported here, flaskr-style: the blueprints import the ``api`` package themselves.
    from api import cache, health, metrics, models, openai_compat, page, realtime, transcribe
    from api.auth import init_auth, log_access
    from api.docs import init_docs
    from api.headers import init_headers
    from api.submission import init_uploads

    settings = config if isinstance(config, Settings) else Settings.from_env(**(config or {}))
    settings.ensure_dirs()

    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 2**20
    app.json.sort_keys = False  # type: ignore[attr-defined]

    if settings.proxy_hops:
        # Behind PROXY_HOPS proxies the client's address (which the per-client limits count
        # by) and the scheme of the URLs answered come from their X-Forwarded-* headers.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    stores = open_stores(settings, socket_timeout=5, max_connections=REDIS_CONNECTIONS)
    init_state(app, ApiState(settings=settings, redis=stores.redis, jobs=stores.jobs, cache=stores.cache,
                             broker=build_broker(settings, shared_connection=True),
                             hub=EventHub(stores.redis), limits=ClientLimits(stores.redis, settings),
                             storage=stores.storage))
    # A store that is down or refuses stops start-up here, not each upload later.
    check_storage(stores.storage)
    # A Redis that may evict keys would drop jobs in progress: refused, saying how to fix it.
    check_redis_policy(stores.redis)

    docs = init_docs(app)
    docs.register_blueprint(transcribe.bp)
    docs.register_blueprint(health.bp)
    docs.register_blueprint(cache.bp)
    docs.register_blueprint(openai_compat.bp)
    docs.register_blueprint(models.bp)
    docs.register_blueprint(realtime.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(metrics.bp)
    # Authentication first: a request without a valid key must not even be read.
    init_auth(app, settings)
    init_uploads(app)
    # After flask-smorest's own handler, so that every error has the service's one shape.
    register_error_handlers(app)
    init_headers(app)
    configure_logging(settings.log_format)
    log_access(settings)
    _init_job_logging(app)
    return app


def _init_job_logging(app: Flask) -> None:
    """Lines logged while serving a request about one job carry its task id."""

    @app.before_request
    def remember_task() -> None:
        task_id = (request.view_args or {}).get("task_id") or g.get("upload_task_id")
        g.log_token = current_task.set(task_id) if task_id else None

    @app.teardown_request
    def forget_task(exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            current_task.reset(token)
