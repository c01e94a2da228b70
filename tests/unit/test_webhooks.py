"""pipeline/webhooks.py: Standard Webhooks signatures and event bodies, stable message ids, the retry
schedule and Retry-After, what one delivery's answer means, and the URL and header checks at submit."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime

import pytest
import requests
from requests.adapters import BaseAdapter
from requests_hardened.ip_filter import InvalidIPAddress
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from pipeline import webhooks
from pipeline.errors import BadRequest, InvalidOption
from pipeline.jobs import Job, State
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript

SECRET = "whsec_" + base64.b64encode(b"a-secret-for-these-unit-tests-32").decode()
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Answer(BaseAdapter):
    """A transport that answers every request with one status (or raises), keeping what was sent."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None,
                 raises: BaseException | None = None) -> None:
        super().__init__()
        self.status, self.headers, self.raises = status, headers or {}, raises
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: object = None,
             verify: object = True, cert: object = None, proxies: object = None) -> requests.Response:
        self.sent.append(request)
        if self.raises is not None:
            raise self.raises
        response = requests.Response()
        response.status_code = self.status
        response.headers.update(self.headers)
        response.request, response.url = request, str(request.url)
        response._content = b""
        return response

    def close(self) -> None:
        pass


def _session(adapter: Answer) -> requests.Session:
    http = requests.Session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def _job(status: State, **extra: object) -> Job:
    return Job(task_id="task-1", status=status, stage="done", progress=1.0, created_at=0.0,
               options=TranscribeOptions(), result_url="https://api.example/result/task-1", **extra)  # type: ignore[arg-type]


# -- signatures, bodies, ids ------------------------------------------------------------------
def test_signed_headers_verify_with_the_secret_and_not_with_a_changed_body() -> None:
    now = datetime.now(UTC)  # the verifier refuses timestamps far from its own clock
    body = webhooks.event_body("transcription.completed", {"task_id": "t"}, now)
    headers = webhooks.signed_headers(SECRET, "msg_1", body, now)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["content-type"] == "application/json" and headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers)["data"] == {"task_id": "t"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace('"t"', '"u"'), headers)


def test_without_a_secret_the_headers_carry_no_signature() -> None:
    assert webhooks.signed_headers("", "msg_2", "{}", NOW) == {
        "webhook-id": "msg_2", "webhook-timestamp": str(int(NOW.timestamp())), "content-type": "application/json"}


def test_an_event_body_is_compact_json_with_a_utc_timestamp_and_text_as_written() -> None:
    body = webhooks.event_body("transcription.failed", {"text": "café ünïcode"}, NOW)
    assert body == '{"type":"transcription.failed","timestamp":"2030-01-02T03:04:05Z","data":{"text":"café ünïcode"}}'


def test_a_message_id_is_stable_per_job_and_status() -> None:
    first = webhooks.message_id("task-1", "completed")
    assert first == webhooks.message_id("task-1", "completed")
    assert first.startswith("msg_") and len(first) == 4 + 32 and int(first[4:], 16) >= 0
    assert first not in {webhooks.message_id("task-1", "failed"), webhooks.message_id("task-2", "completed")}


def test_a_completed_jobs_event_summarises_its_transcript_truncated() -> None:
    text = "word " * 150
    segments = (Segment(id=0, start=0.0, end=6.0, text="a"), Segment(id=1, start=6.0, end=12.5, text="b"))
    result = Transcript(text=text, language="en", duration=12.5, segments=segments)
    body, headers = webhooks.job_event(_job(State.COMPLETED), result, SECRET)
    event = json.loads(body)
    assert event["type"] == "transcription.completed"
    assert event["data"] == {
        "task_id": "task-1", "status": "completed", "result_url": "https://api.example/result/task-1",
        "cached": False, "error": None,
        "transcript": {"text": text[:500], "truncated": True, "language": "en", "duration": 12.5, "segments": 2},
    }
    assert headers["webhook-id"] == webhooks.message_id("task-1", "completed")
    assert Webhook(SECRET).verify(body, headers)["data"]["task_id"] == "task-1"


def test_a_failed_jobs_event_has_its_error_and_no_result_url() -> None:
    error = {"code": "unsupported_media", "message": "not audio"}
    body, _ = webhooks.job_event(_job(State.FAILED, error=error), None, "")
    data = json.loads(body)["data"]
    assert (data["status"], data["result_url"], data["transcript"], data["error"]) == ("failed", None, None, error)


def test_a_jobs_auth_header_is_sent_only_when_on_the_allow_list() -> None:
    allowed = _job(State.FAILED, extra={"webhook_auth_header_name": "X-API-Key", "webhook_auth_header_value": "k1"})
    assert webhooks.job_event(allowed, None, "")[1]["X-API-Key"] == "k1"
    for name in ("Cookie", "webhook-signature"):
        refused = _job(State.FAILED, extra={"webhook_auth_header_name": name, "webhook_auth_header_value": "v"})
        _, headers = webhooks.job_event(refused, None, "")
        assert set(headers) == {"webhook-id", "webhook-timestamp", "content-type"}


# -- the retry policy -------------------------------------------------------------------------
def test_the_schedule_starts_at_its_first_entry_and_repeats_its_last() -> None:
    schedule = (0, 5, 300)
    assert [webhooks.retry_delay(n, schedule) for n in (0, 1, 2, 3, 50)] == [0, 5, 300, 300, 300]
    assert webhooks.retry_delay(3, ()) == 0.0
    # A cap below the scheduled wait never shortens the schedule itself.
    assert webhooks.retry_delay(2, schedule, retry_after=10_000, retry_after_max=60) == 300


@pytest.mark.parametrize(("value", "seconds"), [
    ("  30 ", 30.0), ("0", 0.0), ("", None), ("   ", None), ("²", None), ("-5", None), ("1.5", None),
    ("Wed, 02 Jan 2030 03:05:05 GMT", 60.0), ("Wed, 02 Jan 2030 03:05:05 -0000", 60.0),
])
def test_retry_after_takes_ascii_seconds_or_an_http_date_and_nothing_else(value: str, seconds: float | None) -> None:
    assert webhooks.parse_retry_after(value, NOW) == seconds


# -- one delivery -----------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "delivered", "retryable"), [
    (200, True, False), (204, True, False), (302, False, False), (400, False, False), (404, False, False),
    (408, False, True), (429, False, True), (500, False, True), (503, False, True),
])
def test_what_an_answer_means(status: int, delivered: bool, retryable: bool) -> None:
    got = webhooks.deliver(_session(Answer(status)), "https://hooks.example/x", "{}", {})
    assert (got.delivered, got.status, got.retryable, got.retry_after) == (delivered, status, retryable, None)
    assert got.detail == ("delivered" if delivered else f"HTTP {status}")


def test_the_body_and_headers_are_posted_as_given_and_no_redirect_is_followed() -> None:
    adapter = Answer(307, {"Location": "http://127.0.0.1/internal"})
    got = webhooks.deliver(_session(adapter), "https://hooks.example/x", '{"é":1}', {"webhook-id": "msg_3"})
    assert not got.delivered and len(adapter.sent) == 1
    sent = adapter.sent[0]
    assert (sent.method, sent.url, sent.body, sent.headers["webhook-id"]) == (
        "POST", "https://hooks.example/x", '{"é":1}'.encode(), "msg_3")


@pytest.mark.parametrize(("status", "wait"), [(429, 120.0), (503, 120.0), (500, None), (408, None)])
def test_retry_after_is_read_only_where_it_means_come_back_later(status: int, wait: float | None) -> None:
    got = webhooks.deliver(_session(Answer(status, {"Retry-After": "120"})), "https://hooks.example/x", "{}", {})
    assert got.retry_after == wait


@pytest.mark.parametrize(("error", "retryable", "detail"), [
    (requests.ConnectTimeout("slow"), True, "ConnectTimeout"),
    (requests.ConnectionError("refused"), True, "ConnectionError"),
    (InvalidIPAddress(ipaddress.ip_address("10.0.0.1")), False, "the address is not allowed"),
    (requests.TooManyRedirects("loop"), False, "TooManyRedirects: loop"),
    (UnicodeEncodeError("latin-1", "\u2028", 0, 1, "no"), True, "the request could not be made (UnicodeEncodeError)"),
])
def test_a_request_that_fails_is_an_attempt_retried_only_when_transient(error: BaseException, retryable: bool,
                                                                          detail: str) -> None:
    got = webhooks.deliver(_session(Answer(raises=error)), "https://hooks.example/x", "{}", {})
    assert (got.delivered, got.status, got.retryable, got.detail) == (False, None, retryable, detail)


# -- checks at submit -------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "words"), [
    ("ftp://hooks.example/x", "must be an absolute http:// or https:// URL"),
    ("/relative/path", "must be an absolute http:// or https:// URL"),
    ("https:///no-host", "must be an absolute http:// or https:// URL"),
    ("https://user:pw@hooks.example/x", "must not carry a user name or password"),
    ("https://user@hooks.example/x", "must not carry a user name or password"),
    ("http://8.8.8.8:99999/x", "has an invalid port"),
])
def test_a_malformed_url_is_refused_naming_its_field(url: str, words: str) -> None:
    with pytest.raises(BadRequest) as refused:
        webhooks.check_url(url, allow_private=False, field="audio_url")
    assert refused.value.field == "audio_url" and refused.value.message.startswith(f"audio_url {words}")


def test_a_private_address_passes_only_when_allowed() -> None:
    assert webhooks.check_url("http://127.0.0.1:8080/hook", allow_private=True) == "http://127.0.0.1:8080/hook"
    with pytest.raises(BadRequest, match="loopback, private, link-local or metadata"):
        webhooks.check_url("http://127.0.0.1:8080/hook", allow_private=False)
    # Only the address is relaxed: a credential in the URL is refused either way.
    with pytest.raises(BadRequest, match="user name or password"):
        webhooks.check_url("http://u:p@127.0.0.1/hook", allow_private=True)
    with pytest.raises(BadRequest, match="has an invalid port"):
        webhooks.check_url("http://127.0.0.1:99999/hook", allow_private=True)


def test_an_ipv6_address_with_a_zone_is_never_called() -> None:
    assert webhooks.address_allowed(ipaddress.IPv6Address("2606:4700:4700::1111"))
    assert not webhooks.address_allowed(ipaddress.IPv6Address("2606:4700:4700::1111%eth0"))


def test_a_header_value_is_visible_ascii_spaces_and_tabs() -> None:
    assert webhooks.header_value_ok("") and webhooks.header_value_ok("Bearer a.b-c_d ~\t")
    for bad in ("\x7f", "\x00", "\x1b[0m", "\u00e9"):
        assert not webhooks.header_value_ok(bad), repr(bad)


def test_an_auth_header_name_is_matched_without_case_and_kept_as_written() -> None:
    assert webhooks.check_auth_header("AUTHORIZATION", "Bearer x") == ("AUTHORIZATION", "Bearer x")
    with pytest.raises(InvalidOption) as refused:
        webhooks.check_auth_header("Authorization", "a\0b")
    assert refused.value.field == "webhook_auth_header_value" and "one line" in refused.value.message
