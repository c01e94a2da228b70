"""The one settings object, built from the environment once and passed in explicitly."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from pipeline.engine_registry import ENGINE_NAMES
from pipeline.errors import SettingsError

T = TypeVar("T")

DEVICES = ("auto", "cuda", "cpu")
DIARIZE_FAILURES = ("fail", "ignore")
CACHE_SCOPES = ("client", "global")


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@localhost:5672/"
    upload_dir: Path = Path("data/uploads")
    device: str = "auto"
    gpu_memory_threshold: float = 0.9
    default_engine: str = "faster-whisper"
    default_model: str = "tiny.en"
    compute_type: str = ""  # empty: float16 on a GPU, int8 on the CPU
    cpu_threads: int = 0  # 0 or auto: pipeline.worker.layout sizes it from the cores
    model_cache_size: int = 2
    model_idle_timeout: int = 600
    enable_cache: bool = True
    cache_size: int = 100
    cache_ttl_seconds: int = 3600
    enable_disk_cache: bool = False
    cache_dir: Path = Path("data/cache")
    model_dir: Path = Path("data/models")  # reassembled and converted weights
    job_time_limit_seconds: int = 1800
    max_retries: int = 2
    max_tasks_per_child: int = 0  # 0: never recycle
    max_upload_mb: int = 1024
    max_duration_seconds: int = 4 * 3600
    long_audio_seconds: int = 600  # longer recordings are split into chunks (0: never split)
    chunk_seconds: int = 300  # about how long each chunk is
    # Throughput (pipeline.worker.layout, pipeline.worker.split, pipeline.worker.engines.batched). 0 or auto: decided
    # from the machine. BATCH_SIZE=1 is the sequential decoder, >1 faster-whisper's batched one.
    transcriber_processes: int = 0
    batch_size: int = 0
    split_min_seconds: int = 45  # longer recordings are split across idle transcribers (0: never)
    split_min_chunk_seconds: int = 20  # no piece of such a split is shorter
    sync_timeout_seconds: int = 300
    result_ttl_seconds: int = 7 * 24 * 3600
    webhook_secret: str = ""
    webhook_allow_private: bool = False
    api_keys: tuple[str, ...] = ()
    rate_limit: str = ""
    worker_metrics_port: int = 0  # >0: a worker serves Dramatiq's Prometheus metrics on this port
    log_format: str = "json"  # json (one object a line) or text
    # -- never lost, never stuck: reconciler, webhook outbox, housekeeping ----------
    reconcile_after_seconds: int = 180  # a non-final job idle this long, with no lease, is re-sent
    reconcile_period_seconds: int = 30  # how often one worker process looks for such jobs
    webhook_max_attempts: int = 8
    # Seconds before each attempt (Standard Webhooks: at once, 5 s, 5 min, 30 min, 2 h, 5 h,
    # 10 h, 10 h); attempts past the list wait as long as its last entry.
    webhook_schedule_seconds: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_retry_after_max_seconds: int = 3600  # a receiver's Retry-After is honoured up to this
    webhook_sweep_seconds: int = 5  # how often due webhook deliveries are looked for
    # -- serving many clients: limits, deadlines, roles, models ----------------------
    # A client is an API key, or the caller's address when no keys are set; 0 turns a limit off.
    admin_api_keys: tuple[str, ...] = ()  # may also clear the cache, see every job, gpu-status
    metrics_token: str = ""  # set: /metrics needs "Authorization: Bearer <it>" (or an admin key)
    max_open_streams_per_client: int = 100
    max_active_jobs_per_client: int = 100  # queued + running
    max_audio_seconds_per_day: int = 0  # probed duration at upload, per UTC day
    stream_max_seconds: int = 3600  # an event stream ends after this; clients reconnect
    # A quiet event stream sends a comment this often: it keeps proxies from closing it, and a
    # client that left is only noticed (its stream slot freed) when a write fails.
    stream_keepalive_seconds: int = 15
    fetch_timeout_seconds: int = 300  # the whole download of a `url`, not each read
    # -- live transcription (/v1/realtime) --------------------------------------------------------
    max_live_sessions_per_client: int = 10  # realtime sessions open at once; 0: no limit
    live_session_max_seconds: int = 3600  # of audio: the session then ends (record=true keeps it)
    live_idle_timeout_seconds: int = 60  # no client event this long ends the session
    # Audio may run this far ahead of the wall clock since the session began: a client that
    # streams a file faster than real time is refused beyond it (an error event, the audio dropped).
    live_max_ahead_seconds: int = 10
    live_claim_timeout_seconds: int = 5  # no live worker took the session within this: refused
    proxy_hops: int = 0  # proxies in front whose X-Forwarded-For/-Proto/-Host are trusted
    # -- what a hostile client may not do ---------------------------------------------------------
    # The service's address as clients reach it (https://stt.example.com, or with a path prefix):
    # every absolute URL it writes (status_url, result_url, the webhook body) starts with it.
    # Empty: URLs are relative to the API, never built from a client's Host header.
    public_url: str = ""
    # With API keys, a transcript is reused only for the key that made it (client); global also
    # shares it between keys, for a single-tenant deployment that wants cross-key hits.
    cache_scope: str = "client"
    # Failed authentications one address may make (limits syntax, per window), RATE_LIMIT or not;
    # off turns it off. Past it, the address is refused outright, right keys included, until
    # the window ends: guessing is throttled even where no RATE_LIMIT is set.
    failed_auth_limit: str = "20/minute"
    worker_metrics_bind: str = "127.0.0.1"  # where a worker's metrics port listens (0.0.0.0: every interface)
    models: tuple[str, ...] = ()  # names a request may ask for; empty: tiny.en, base, DEFAULT_MODEL
    # -- storage: where a job's files live (pipeline.storage) --------------------------
    # A folder, or s3://bucket/prefix with boto3's standard AWS_* variables; empty: UPLOAD_DIR.
    storage_url: str = ""
    scratch_dir: Path = Path("data/scratch")  # this host's working copies, removed when done
    # -- speakers -------------------------------------------------------------------------
    # A diarize stage that fails: fail ends the job failed; ignore completes it without speakers,
    # saying so in the job's warnings.
    diarize_failure: str = "fail"
    # torch's CPU threads in a process that diarizes. Diarization runs beside transcriptions that
    # already fill the cores; with torch's default (every core) it ran 2-6x slower there.
    diarize_threads: int = 1
    # A diarizer loads torch and its models with its first job; after this many seconds without
    # one its process restarts and holds none of them (0 keeps them loaded).
    diarizer_idle_seconds: int = 300

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default: the process environment).

        A value that does not parse raises ``SettingsError`` naming the variable, so that a
        typo stops start-up instead of surfacing as a strange failure hours later.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.name.upper()
            if name in env and env[name].strip() != "":
                values[f.name] = _PARSERS.get(f.name, _as_str)(name, env[name].strip())
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise SettingsError(f"DEVICE must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.default_engine not in ENGINE_NAMES:
            raise SettingsError(
                f"DEFAULT_ENGINE must be one of {', '.join(ENGINE_NAMES)}, not {self.default_engine!r}"
            )
        if self.diarize_failure not in DIARIZE_FAILURES:
            raise SettingsError(f"DIARIZE_FAILURE must be fail or ignore, not {self.diarize_failure!r}")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"LOG_FORMAT must be json or text, not {self.log_format!r}")
        if not 0.0 < self.gpu_memory_threshold <= 1.0:
            raise SettingsError("GPU_MEMORY_THRESHOLD must be a fraction in (0, 1]")
        for url, name, schemes in (
            (self.redis_url, "REDIS_URL", ("redis://", "rediss://", "unix://")),
            (self.rabbitmq_url, "RABBITMQ_URL", ("amqp://", "amqps://")),
        ):
            if not url.startswith(schemes):
                raise SettingsError(f"{name} must start with {' or '.join(schemes)}: {url!r}")

        if self.webhook_secret and not webhook_secret_ok(self.webhook_secret):
            raise SettingsError("WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes; "
                                "make one with python -c \"import base64,os; print('whsec_' + "
                                "base64.b64encode(os.urandom(32)).decode())\"")
        if not self.webhook_schedule_seconds:
            raise SettingsError("WEBHOOK_SCHEDULE_SECONDS must list at least one delay, such as 0,5,300")
        if min(self.reconcile_after_seconds, self.reconcile_period_seconds, self.webhook_sweep_seconds) < 1:
            raise SettingsError("RECONCILE_AFTER_SECONDS, RECONCILE_PERIOD_SECONDS and WEBHOOK_SWEEP_SECONDS "
                                "must be at least 1")
        if self.storage_url:
            from pipeline.storage import parse_url

            parse_url(self.storage_url)
        for model in self.models:
            if not model_name_ok(model):
                raise SettingsError(f"MODELS must list model names such as tiny.en or base, not paths: {model!r}")
        for name, spec in (("RATE_LIMIT", self.rate_limit), ("FAILED_AUTH_LIMIT", self.failed_auth_limit)):
            if spec and spec.lower() != "off":
                from limits import parse_many

                try:
                    parse_many(spec)
                except ValueError:
                    raise SettingsError(
                        f"{name} must look like '60/minute' or '10/second;1000/day', not {spec!r}"
                    ) from None
        if self.cache_scope not in CACHE_SCOPES:
            raise SettingsError(f"CACHE_SCOPE must be client or global, not {self.cache_scope!r}")
        if self.public_url and not public_url_ok(self.public_url):
            raise SettingsError("PUBLIC_URL must be the absolute http:// or https:// address clients reach the "
                                f"service at, with no query or fragment, such as https://stt.example.com: "
                                f"{self.public_url!r}")
        import ipaddress

        try:
            ipaddress.ip_address(self.worker_metrics_bind)
        except ValueError:
            raise SettingsError("WORKER_METRICS_BIND must be an IP address such as 127.0.0.1 or 0.0.0.0, "
                                f"not {self.worker_metrics_bind!r}") from None

    @property
    def keys_on(self) -> bool:
        """Whether callers must send a key (API_KEYS or ADMIN_API_KEYS set)."""
        return bool(self.api_keys or self.admin_api_keys)

    @property
    def cache_per_client(self) -> bool:
        """Whether transcripts are reused only for the key that made them: with keys on,
        unless CACHE_SCOPE=global (with no keys every caller is one client anyway)."""
        return self.keys_on and self.cache_scope != "global"

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """The model names a request may ask for; DEFAULT_MODEL is always one of them."""
        listed = self.models or ("tiny.en", "base")
        return tuple(dict.fromkeys((*listed, self.default_model)))

    @property
    def storage_location(self) -> str:
        """What ``pipeline.storage.from_url`` is given: STORAGE_URL, else the UPLOAD_DIR folder."""
        return self.storage_url or str(self.upload_dir)

    def ensure_dirs(self) -> None:
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if self.enable_disk_cache:
            self.cache_dir.mkdir(parents=True, exist_ok=True)


def webhook_secret_ok(secret: str) -> bool:
    """A Standard Webhooks secret: a short or mistyped one would sign every event weakly, or
    fail at the first delivery instead of at start-up."""
    import base64
    import binascii

    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


def public_url_ok(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query
            and not parts.fragment and not parts.username and not parts.password)


def model_name_ok(name: str) -> bool:
    """A model's name, never a path: a request naming a file would make a worker read it."""
    return bool(name) and not name.startswith((".", "~")) and not any(c in name for c in "/\\:")


def _as_str(name: str, raw: str) -> str:
    return raw


def _as_bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _number(kind: Callable[[str], T], label: str, minimum: float = 0) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {label}, not {raw!r}") from None
        if value < minimum:  # type: ignore[operator]
            raise SettingsError(f"{name} must be at least {minimum}, not {raw!r}")
        return value

    return parse


def _as_path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _as_keys(name: str, raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def _as_seconds_list(name: str, raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name} must be whole seconds separated by commas, not {raw!r}") from None
    if any(v < 0 for v in values):
        raise SettingsError(f"{name} must not hold a negative delay: {raw!r}")
    return values


_INT = _number(int, "a whole number")
_POSITIVE_INT = _number(int, "a whole number", minimum=1)
# 'auto' (any case) is stored as 0; other values as _INT parses them.
_AUTO_INT = _number(lambda raw: 0 if raw.lower() == "auto" else int(raw), "auto or a whole number")
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "upload_dir": _as_path,
    "cache_dir": _as_path,
    "model_dir": _as_path,
    "gpu_memory_threshold": _number(float, "a number"),
    "cpu_threads": _AUTO_INT,
    "model_cache_size": _POSITIVE_INT,
    "model_idle_timeout": _INT,
    "enable_cache": _as_bool,
    "cache_size": _POSITIVE_INT,
    "cache_ttl_seconds": _POSITIVE_INT,
    "enable_disk_cache": _as_bool,
    "job_time_limit_seconds": _POSITIVE_INT,
    "max_retries": _INT,
    "max_tasks_per_child": _INT,
    "max_upload_mb": _POSITIVE_INT,
    "max_duration_seconds": _POSITIVE_INT,
    "long_audio_seconds": _INT,
    "chunk_seconds": _POSITIVE_INT,
    "transcriber_processes": _AUTO_INT,
    "batch_size": _AUTO_INT,
    "split_min_seconds": _INT,
    "split_min_chunk_seconds": _POSITIVE_INT,
    "diarize_threads": _POSITIVE_INT,
    "diarizer_idle_seconds": _INT,
    "sync_timeout_seconds": _POSITIVE_INT,
    "result_ttl_seconds": _POSITIVE_INT,
    "webhook_max_attempts": _POSITIVE_INT,
    "webhook_allow_private": _as_bool,
    "api_keys": _as_keys,
    "worker_metrics_port": _INT,
    "reconcile_after_seconds": _POSITIVE_INT,
    "reconcile_period_seconds": _POSITIVE_INT,
    "webhook_schedule_seconds": _as_seconds_list,
    "webhook_retry_after_max_seconds": _INT,
    "webhook_sweep_seconds": _POSITIVE_INT,
    "admin_api_keys": _as_keys,
    "max_open_streams_per_client": _INT,
    "max_live_sessions_per_client": _INT,
    "live_session_max_seconds": _POSITIVE_INT,
    "live_idle_timeout_seconds": _POSITIVE_INT,
    "live_max_ahead_seconds": _POSITIVE_INT,
    "live_claim_timeout_seconds": _POSITIVE_INT,
    "max_active_jobs_per_client": _INT,
    "max_audio_seconds_per_day": _INT,
    "stream_max_seconds": _POSITIVE_INT,
    "stream_keepalive_seconds": _POSITIVE_INT,
    "fetch_timeout_seconds": _POSITIVE_INT,
    "proxy_hops": _INT,
    "public_url": lambda name, raw: raw.rstrip("/"),
    "cache_scope": lambda name, raw: raw.lower(),
    "models": _as_keys,
    "scratch_dir": _as_path,
}
