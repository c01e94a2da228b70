"""The deployment files agree with the code: docker-compose.yml, the Dockerfile, .dockerignore,
.env.example and the Procfile. Static checks only; no Docker daemon, Redis or RabbitMQ needed.

Every command must name a program that exists here, with options its own parser accepts,
modules that exist and queues that are real; every variable must be a real setting; the
transcribers, volumes, health checks and dependencies must be what docs/operations.md says.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from tests.support.helpers import ROOT

PYPROJECT = ROOT / "pyproject.toml"


# The web process in a fresh interpreter: the distributions of every module it imported.
API_DISTRIBUTIONS = """
import json, sys, importlib.metadata as md
from api import create_app
create_app()
owners = md.packages_distributions()
found = set()
for name in list(sys.modules):
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_") or top in ("api", "pipeline", "client"):
        continue
    if top in owners:
        found.update(owners[top])
    elif getattr(sys.modules[name], "__file__", None):  # not a runtime-made module (cython_runtime)
        found.add(top)
print(json.dumps(sorted(found)))
"""


# Imported when installed, done without otherwise: flask-smorest offers the document as YAML too.
OPTIONAL_IMPORTS = frozenset({"pyyaml"})


def _closure(requirements: list[str]) -> set[str]:
    """The distributions a plain (no extras) install of ``requirements`` brings, by name."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [(r, chosen) for r in requires for chosen in ("", *requirement.extras)]
    return seen


def test_the_web_process_needs_nothing_beyond_the_base_install(test_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", API_DISTRIBUTIONS], cwd=ROOT, env={**os.environ, **test_env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {name.lower().replace("_", "-") for name in json.loads(done.stdout.splitlines()[-1])}
    base = _closure(tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"])
    assert imported, "the app imported no third-party package: the probe is broken"
    missing = imported - base - OPTIONAL_IMPORTS
    assert not missing, f"the API imports {sorted(missing)}, which the base install lacks"
