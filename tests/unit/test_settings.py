"""pipeline/settings.py: defaults, parsing and the errors that stop start-up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.errors import PipelineError, SettingsError
from pipeline.settings import Settings

BOOL_VARS = ("ENABLE_CACHE", "ENABLE_DISK_CACHE", "WEBHOOK_ALLOW_PRIVATE")
# Whole numbers where 0 means "off" or "the default", so only negatives are refused.
NON_NEGATIVE_INT_VARS = ("CPU_THREADS", "MODEL_IDLE_TIMEOUT", "MAX_RETRIES", "MAX_TASKS_PER_CHILD",
                         "DIARIZER_IDLE_SECONDS")
# Whole numbers that must be at least 1.
POSITIVE_INT_VARS = (
    "MODEL_CACHE_SIZE",
    "CACHE_SIZE",
    "CACHE_TTL_SECONDS",
    "JOB_TIME_LIMIT_SECONDS",
    "MAX_UPLOAD_MB",
    "MAX_DURATION_SECONDS",
    "SYNC_TIMEOUT_SECONDS",
    "RESULT_TTL_SECONDS",
    "WEBHOOK_MAX_ATTEMPTS",
    "DIARIZE_THREADS",
    "STREAM_KEEPALIVE_SECONDS",
)
INT_VARS = NON_NEGATIVE_INT_VARS + POSITIVE_INT_VARS


def _error(environ: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ)
    return info.value


def test_defaults_match_the_design() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.rabbitmq_url == "amqp://guest:guest@localhost:5672/"
    assert s.device == "auto"
    assert s.gpu_memory_threshold == 0.9
    assert s.default_engine == "faster-whisper"
    assert s.default_model == "tiny.en"
    assert s.enable_cache is True
    assert s.cache_size == 100
    assert s.cache_ttl_seconds == 3600
    assert s.enable_disk_cache is False
    assert s.job_time_limit_seconds == 1800
    assert s.max_retries == 2
    assert s.webhook_allow_private is False
    assert s.api_keys == ()
    assert s.rate_limit == ""
    assert isinstance(s.upload_dir, Path) and isinstance(s.cache_dir, Path)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cache_size = 5  # type: ignore[misc]


def test_every_field_is_read_from_its_upper_case_variable() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "rediss://cache.example:6380/3",
            "RABBITMQ_URL": "amqps://u:p@mq.example:5671/vh",
            "UPLOAD_DIR": "/srv/uploads",
            "DEVICE": "cuda",
            "GPU_MEMORY_THRESHOLD": "0.75",
            "DEFAULT_ENGINE": "openai-whisper",
            "DEFAULT_MODEL": "base",
            "COMPUTE_TYPE": "int8_float16",
            "CPU_THREADS": "4",
            "MODEL_CACHE_SIZE": "3",
            "MODEL_IDLE_TIMEOUT": "0",
            "ENABLE_CACHE": "false",
            "CACHE_SIZE": "7",
            "CACHE_TTL_SECONDS": "60",
            "ENABLE_DISK_CACHE": "yes",
            "CACHE_DIR": "/srv/cache",
            "JOB_TIME_LIMIT_SECONDS": "90",
            "MAX_RETRIES": "0",
            "MAX_TASKS_PER_CHILD": "100",
            "MAX_UPLOAD_MB": "10",
            "MAX_DURATION_SECONDS": "600",
            "SYNC_TIMEOUT_SECONDS": "30",
            "RESULT_TTL_SECONDS": "120",
            "WEBHOOK_SECRET": "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "WEBHOOK_MAX_ATTEMPTS": "2",
            "WEBHOOK_ALLOW_PRIVATE": "on",
            "API_KEYS": "k1,k2",
            "RATE_LIMIT": "10/minute",
        }
    )
    assert s == Settings(
        redis_url="rediss://cache.example:6380/3",
        rabbitmq_url="amqps://u:p@mq.example:5671/vh",
        upload_dir=Path("/srv/uploads"),
        device="cuda",
        gpu_memory_threshold=0.75,
        default_engine="openai-whisper",
        default_model="base",
        compute_type="int8_float16",
        cpu_threads=4,
        model_cache_size=3,
        model_idle_timeout=0,
        enable_cache=False,
        cache_size=7,
        cache_ttl_seconds=60,
        enable_disk_cache=True,
        cache_dir=Path("/srv/cache"),
        job_time_limit_seconds=90,
        max_retries=0,
        max_tasks_per_child=100,
        max_upload_mb=10,
        max_duration_seconds=600,
        sync_timeout_seconds=30,
        result_ttl_seconds=120,
        webhook_secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        webhook_max_attempts=2,
        webhook_allow_private=True,
        api_keys=("k1", "k2"),
        rate_limit="10/minute",
    )


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_SIZE", "17")
    monkeypatch.setenv("DEVICE", "cpu")
    s = Settings.from_env()
    assert s.cache_size == 17 and s.device == "cpu"


def test_overrides_win_and_are_validated() -> None:
    assert Settings.from_env({"CACHE_SIZE": "5"}, cache_size=9).cache_size == 9
    with pytest.raises(SettingsError, match="DEVICE"):
        Settings.from_env({}, device="gpu")


@pytest.mark.parametrize("var", BOOL_VARS)
@pytest.mark.parametrize("raw", ["maybe", "2", "truthy", "y"])
def test_bad_bool_names_the_variable(var: str, raw: str) -> None:
    err = _error({var: raw})
    assert var in str(err) and repr(raw) in str(err)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("TRUE", True), (" Yes ", True), ("on", True),
     ("0", False), ("false", False), ("False", False), ("no", False), ("OFF", False)],
)
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"ENABLE_CACHE": raw}).enable_cache is expected
    assert Settings.from_env({"WEBHOOK_ALLOW_PRIVATE": raw}).webhook_allow_private is expected


@pytest.mark.parametrize("var", INT_VARS)
@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "ten"])
def test_non_integer_names_the_variable(var: str, raw: str) -> None:
    err = _error({var: raw})
    assert var in str(err)
    assert "whole number" in str(err)


@pytest.mark.parametrize("var", INT_VARS)
def test_negative_integer_is_refused(var: str) -> None:
    err = _error({var: "-1"})
    assert var in str(err)


@pytest.mark.parametrize("var", POSITIVE_INT_VARS)
def test_zero_is_refused_where_the_minimum_is_one(var: str) -> None:
    err = _error({var: "0"})
    assert var in str(err) and "at least 1" in str(err)


@pytest.mark.parametrize("var", NON_NEGATIVE_INT_VARS)
def test_zero_is_allowed_where_it_means_off(var: str) -> None:
    s = Settings.from_env({var: "0"})
    assert getattr(s, var.lower()) == 0


def test_integers_are_trimmed() -> None:
    assert Settings.from_env({"CACHE_SIZE": "  42 "}).cache_size == 42


@pytest.mark.parametrize("raw", ["0", "-0.1", "1.5", "1.0001", "nan", "inf", "abc", "90%"])
def test_gpu_threshold_out_of_range_names_the_variable(raw: str) -> None:
    err = _error({"GPU_MEMORY_THRESHOLD": raw})
    assert "GPU_MEMORY_THRESHOLD" in str(err)


@pytest.mark.parametrize(("raw", "expected"), [("1", 1.0), ("0.5", 0.5), ("0.01", 0.01), (".9", 0.9)])
def test_gpu_threshold_in_range(raw: str, expected: float) -> None:
    assert Settings.from_env({"GPU_MEMORY_THRESHOLD": raw}).gpu_memory_threshold == expected


@pytest.mark.parametrize("raw", ["gpu", "tpu", "mps", "cuda:0"])
def test_bad_device_names_the_variable(raw: str) -> None:
    err = _error({"DEVICE": raw})
    assert "DEVICE" in str(err) and repr(raw) in str(err)


@pytest.mark.parametrize("raw", ["auto", "cuda", "cpu"])
def test_good_devices(raw: str) -> None:
    assert Settings.from_env({"DEVICE": raw}).device == raw


@pytest.mark.parametrize("raw", ["whisper", "faster_whisper", "whisper.cpp"])
def test_bad_default_engine_names_the_variable(raw: str) -> None:
    err = _error({"DEFAULT_ENGINE": raw})
    assert "DEFAULT_ENGINE" in str(err) and repr(raw) in str(err)


@pytest.mark.parametrize("raw", ["faster-whisper", "openai-whisper"])
def test_good_default_engines(raw: str) -> None:
    assert Settings.from_env({"DEFAULT_ENGINE": raw}).default_engine == raw


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("REDIS_URL", "http://localhost:6379/0"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "amqp://localhost:5672/"),
        ("RABBITMQ_URL", "redis://localhost:6379/0"),
        ("RABBITMQ_URL", "http://guest:guest@localhost:15672/"),
        ("RABBITMQ_URL", "localhost:5672"),
    ],
)
def test_bad_url_scheme_names_the_variable(var: str, raw: str) -> None:
    err = _error({var: raw})
    assert var in str(err)


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("REDIS_URL", "redis://localhost:6379/2"),
        ("REDIS_URL", "rediss://example:6380/0"),
        ("REDIS_URL", "unix:///run/redis.sock"),
        ("RABBITMQ_URL", "amqp://u:p@example:5672/vhost"),
        ("RABBITMQ_URL", "amqps://u:p@example:5671/"),
    ],
)
def test_good_url_schemes(var: str, raw: str) -> None:
    assert getattr(Settings.from_env({var: raw}), var.lower()) == raw


def test_settings_error_is_a_pipeline_error_that_is_not_retried() -> None:
    err = _error({"CACHE_SIZE": "lots"})
    assert isinstance(err, PipelineError)
    assert err.code == "invalid_setting" and err.retryable is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("one", ("one",)),
        ("a,b", ("a", "b")),
        (" a , b ,, c ,", ("a", "b", "c")),
        (",,,", ()),
    ],
)
def test_api_keys_parsing(raw: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"API_KEYS": raw}).api_keys == expected


@pytest.mark.parametrize(
    "var",
    ["REDIS_URL", "RABBITMQ_URL", "UPLOAD_DIR", "DEVICE", "GPU_MEMORY_THRESHOLD", "DEFAULT_ENGINE",
     "DEFAULT_MODEL", "CACHE_SIZE", "ENABLE_CACHE", "MAX_RETRIES", "API_KEYS", "WEBHOOK_ALLOW_PRIVATE"],
)
@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_values_fall_back_to_defaults(var: str, raw: str) -> None:
    assert Settings.from_env({var: raw}) == Settings()


def test_paths_expand_the_home_directory() -> None:
    s = Settings.from_env({"UPLOAD_DIR": "~/up", "CACHE_DIR": "/tmp/c"})
    assert s.upload_dir == Path("~/up").expanduser()
    assert not str(s.upload_dir).startswith("~")
    assert s.cache_dir == Path("/tmp/c")


def test_unknown_variables_are_ignored() -> None:
    assert Settings.from_env({"NOT_A_SETTING": "x", "PATH": "/bin"}) == Settings()


def test_ensure_dirs_creates_upload_dir_and_disk_cache_only_when_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # any relative default folder lands here, not in the checkout
    off = Settings(upload_dir=tmp_path / "u1", cache_dir=tmp_path / "c1")
    off.ensure_dirs()
    assert (tmp_path / "u1").is_dir() and not (tmp_path / "c1").exists()
    on = Settings(upload_dir=tmp_path / "u2" / "deep", cache_dir=tmp_path / "c2", enable_disk_cache=True)
    on.ensure_dirs()
    assert (tmp_path / "u2" / "deep").is_dir() and (tmp_path / "c2").is_dir()


@pytest.mark.parametrize(("var", "raw"), [
    ("PUBLIC_URL", "stt.example.com"), ("PUBLIC_URL", "ftp://stt.example.com"),
    ("PUBLIC_URL", "https://stt.example.com/?x=1"), ("PUBLIC_URL", "https://user:pw@stt.example.com"),
    ("CACHE_SCOPE", "tenant"), ("FAILED_AUTH_LIMIT", "lots"), ("WORKER_METRICS_BIND", "localhost"),
])
def test_the_security_settings_name_a_bad_value(var: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: raw})


def test_the_security_defaults() -> None:
    s = Settings()
    assert (s.public_url, s.cache_scope, s.failed_auth_limit, s.worker_metrics_bind) == (
        "", "client", "20/minute", "127.0.0.1")
    assert not s.cache_per_client  # no keys: one client is everyone
    assert Settings(api_keys=("k",)).cache_per_client
    assert not Settings(api_keys=("k",), cache_scope="global").cache_per_client
    assert Settings.from_env({"PUBLIC_URL": "https://stt.example.com/v/", "CACHE_SCOPE": "Global",
                              "FAILED_AUTH_LIMIT": "off", "WORKER_METRICS_BIND": "::"}) == Settings(
        public_url="https://stt.example.com/v", cache_scope="global", failed_auth_limit="off",
        worker_metrics_bind="::")
