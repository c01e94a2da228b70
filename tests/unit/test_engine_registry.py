"""pipeline/engine_registry.py: finding an engine by name, its compute type per device, and loading its
class and resolver from ``module:attribute`` strings only when asked."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest

from pipeline.engine_registry import ENGINE_NAMES, ENGINE_SPECS, ENGINES, EngineSpec, engine_spec
from pipeline.errors import ModelNotFound

ROOT = Path(__file__).resolve().parents[2]


def resolve_under(model: str, model_dir: Path) -> str:
    """A Resolver for the tests: the model's folder under the model directory."""
    return str(model_dir / model)


SPEC = EngineSpec("test-engine", "collections:OrderedDict", f"{__name__}:resolve_under", cpu_compute_type="int8")


def test_each_engine_is_found_by_its_name() -> None:
    assert ENGINE_NAMES == tuple(spec.name for spec in ENGINE_SPECS)
    for spec in ENGINE_SPECS:
        assert engine_spec(spec.name) is spec is ENGINES[spec.name]


@pytest.mark.parametrize("name", ["whisper", "", "Faster-Whisper"])
def test_an_unknown_engine_is_refused_naming_the_ones_there_are(name: str) -> None:
    with pytest.raises(ModelNotFound) as refused:
        engine_spec(name)
    assert refused.value.message == f"Unknown engine {name!r}; use one of {', '.join(ENGINE_NAMES)}."
    assert refused.value.http_status == 422


def test_the_compute_type_is_the_gpus_on_cuda_and_the_engines_own_elsewhere() -> None:
    assert [SPEC.compute_type(device) for device in ("cuda", "cpu", "mps", "")] == [
        "float16", "int8", "int8", "int8"]
    assert engine_spec("openai-whisper").compute_type("cpu") == "float32"
    assert engine_spec("faster-whisper").compute_type("cpu") == "int8"


def test_the_engine_class_and_resolver_are_imported_from_their_names() -> None:
    assert SPEC.engine_class() is OrderedDict
    assert SPEC.resolve("tiny", Path("/models")) == "/models/tiny"


def test_a_target_that_is_not_there_fails_when_used_not_when_listed() -> None:
    broken = EngineSpec("broken", "collections:NoSuchClass", "no_such_module_here:resolve", cpu_compute_type="int8")
    with pytest.raises(AttributeError):
        broken.engine_class()
    with pytest.raises(ModuleNotFoundError):
        broken.resolve("tiny", Path("/models"))


def test_every_registered_target_names_a_module_that_defines_it() -> None:
    # The strings are only read on first use, so a typo would surface in a worker and not here; read
    # the source rather than import it, which would load torch.
    for spec in ENGINE_SPECS:
        for target, kind in ((spec.engine, "class"), (spec.resolver, "def")):
            module, _, attribute = target.partition(":")
            source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
            assert re.search(rf"^{kind} {attribute}\b", source, re.MULTILINE), target
