"""pipeline/worker/context.py: a worker's context built from the settings (its folders made, its stores
wired, no model loaded, no connection opened) and one context per process, however many threads ask."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.storage import LocalStorage
from pipeline.stores import Stores
from pipeline.worker import context
from pipeline.worker.context import Context, build_context, worker_context


@pytest.fixture
def fresh_process() -> Iterator[None]:
    """No context cached before or after: a test's stand-in must not outlive it."""
    context._process_context.cache_clear()
    yield
    context._process_context.cache_clear()


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({
        "REDIS_URL": "redis://127.0.0.1:6379/5",  # redis-py connects on a first command; none is sent
        "UPLOAD_DIR": str(tmp_path / "uploads"), "SCRATCH_DIR": str(tmp_path / "scratch"),
        "MODEL_DIR": str(tmp_path / "models"), "CACHE_DIR": str(tmp_path / "cache"),
    })


def test_a_context_makes_its_folders_and_wires_its_stores_without_loading_a_model(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ctx = build_context(settings)
    assert isinstance(ctx, Stores) and ctx.settings is settings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "scratch", "uploads"]  # no disk cache asked
    assert isinstance(ctx.storage, LocalStorage) and ctx.storage.root == tmp_path / "uploads"
    assert ctx.jobs.redis is ctx.redis and ctx.cache.redis is ctx.redis and ctx.leases.redis is ctx.redis
    assert ctx.models.loaded() == []


def test_the_models_stay_out_of_the_contexts_repr(tmp_path: Path) -> None:
    assert "ModelCache" not in repr(build_context(_settings(tmp_path)))


@pytest.mark.usefixtures("fresh_process")
def test_one_context_per_process_from_its_environment_however_many_threads_ask(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "from-env"))
    built: list[Settings] = []
    made = build_context(_settings(tmp_path))

    def counting_build(settings: Settings) -> Context:
        built.append(settings)
        return made

    monkeypatch.setattr(context, "build_context", counting_build)
    start = threading.Barrier(8)
    got: list[Context] = []

    def ask() -> None:
        start.wait()
        got.append(worker_context())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(built) == 1 and built[0].upload_dir == tmp_path / "from-env"
    assert len(got) == 8 and all(c is made for c in got)
    assert worker_context() is made and len(built) == 1
