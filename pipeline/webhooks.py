"""Webhook delivery: Standard Webhooks signatures, SSRF guards, and the retry policy (the
schedule, and a receiver's ``Retry-After``). When to try is the outbox's business
(``pipeline.outbox``); this module makes one attempt and says what the answer means.

Addresses are checked twice: when the job is submitted (a clear 400) and again when
delivering, by requests-hardened, which connects to the very address it checked, so that a
name re-pointed at an internal address between the two (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress, filter_host
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from standardwebhooks.webhooks import Webhook

from pipeline.errors import BadRequest, InvalidOption

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
# Transient answers worth another try; any other 4xx means the receiver rejected the event.
RETRY_STATUSES = frozenset({408, 429})
# Answers whose Retry-After says when the receiver wants to hear from us again.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Headers a job may ask its webhook requests to carry (lower case): the usual places for a
# receiver's credential, and nothing that changes how the request is framed or routed (Host,
# Content-Length, Transfer-Encoding, Cookie) or forges the signature (webhook-*).
AUTH_HEADER_NAMES = frozenset({
    "authorization", "x-api-key", "api-key", "x-auth-token", "x-access-token", "x-webhook-token",
    "x-webhook-secret", "x-webhook-key",
})


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Every IPv6 form that carries an IPv4 address inside it, and the IPv4 address it carries
# (None where the form is refused whatever it carries).
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291): ::a.b.c.d
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[bool, ipaddress.IPv4Address | None]:
    """(whether ``ip`` is a form that embeds an IPv4 address, the address where one is read)."""
    if ip.ipv4_mapped is not None:
        return True, ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE:
        return True, ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return True, ip.sixtofour
    if ip.teredo is not None:
        return True, ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return True, ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return False, None


def address_allowed(ip: IPAddress) -> bool:
    """Whether the service may call ``ip``: a global unicast address, and no IPv6 form that
    carries an IPv4 address. requests-hardened judges IPv4-mapped addresses by their IPv4
    part but let ``::127.0.0.1`` (IPv4-compatible) through as a global IPv6 address; here an
    IPv4-mapped address is judged by what it carries and every other embedding is refused,
    since what a relay or translator (6to4, Teredo, NAT64) does with it is not ours to know."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embeds, inner = embedded_ipv4(ip)
        if embeds:
            return ip.ipv4_mapped is not None and inner is not None and address_allowed(inner)
    return ip.is_global and not ip.is_multicast


def _refuse_unless_allowed(host: str) -> str:
    """``host`` (an address as requests-hardened resolved it, IPv6 in brackets) or InvalidIPAddress."""
    ip = ipaddress.ip_address(host.strip("[]"))
    if not address_allowed(ip):
        log.warning("refused outbound address %s", ip)
        raise InvalidIPAddress(ip)
    return host


class GuardedAdapter(IPFilterAdapter):
    """requests-hardened's adapter (it connects to the very address it checked), with
    ``address_allowed`` checked on that address too."""

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: bool | str,
                                             cert: str | tuple[str, str] | None = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        _refuse_unless_allowed(str(host_params["host"]))
        return host_params, pool_kwargs


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    status: int | None
    retryable: bool
    detail: str
    retry_after: float | None = None  # seconds the receiver asked us to wait (429/503)


def check_url(url: str, *, allow_private: bool, field: str = "webhook_url") -> str:
    """Refuse a URL (a webhook's, or a recording's to fetch) that is malformed or points inside
    the network (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"{field} must be an absolute http:// or https:// URL.", field=field)
    if parts.username or parts.password:
        raise BadRequest(f"{field} must not carry a user name or password.", field=field)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest(f"{field} has an invalid port.", field=field) from None
    if allow_private:
        return url
    try:
        _refuse_unless_allowed(filter_host(parts.hostname, port, allow_loopback=False))
    except (InvalidIPAddress, ValueError):
        raise BadRequest(
            f"{field} points at a loopback, private, link-local or metadata address, "
            "which this service does not call.", field=field) from None
    except requests.RequestException:
        raise BadRequest(f"{field}'s host {parts.hostname!r} could not be resolved.", field=field) from None
    return url


def header_value_ok(value: str) -> bool:
    """Whether HTTP can carry ``value`` as a header value as it is: visible ASCII, spaces and
    tabs. Anything else either smuggles a second header (CR, LF) or cannot be encoded at all
    (U+2028 and every other character past Latin-1), which used to fail only at delivery."""
    return all(c == "\t" or " " <= c <= "~" for c in value)


def check_auth_header(name: str, value: str, field: str = "webhook_auth_header_name") -> tuple[str, str]:
    """Refuse a webhook auth header whose name is not in ``AUTH_HEADER_NAMES`` or whose value
    could smuggle a second header or cannot be sent."""
    if any(c in value for c in "\r\n\0"):
        raise InvalidOption("webhook_auth_header_value must be one line.", field="webhook_auth_header_value")
    if not header_value_ok(value):
        bad = next(c for c in value if not header_value_ok(c))
        raise InvalidOption(f"webhook_auth_header_value must be printable ASCII (an HTTP header cannot carry "
                            f"U+{ord(bad):04X}).", field="webhook_auth_header_value")
    if name.lower() not in AUTH_HEADER_NAMES:
        raise InvalidOption(f"{field} must be one of {', '.join(sorted(AUTH_HEADER_NAMES))}, not {name!r}.",
                            field=field)
    return name, value


def session(*, allow_private: bool, follow_redirects: bool = False) -> requests.Session:
    """Webhooks never follow redirects; fetching a recording may (each hop is checked)."""
    http = HTTPSession(
        Config(
            ip_filter_enable=not allow_private,
            ip_filter_allow_loopback_ips=False,
            never_redirect=not follow_redirects,
            default_timeout=(TIMEOUT_SECONDS, TIMEOUT_SECONDS),
            user_agent_override="whisper-pipeline-webhooks/1",
        )
    )
    if not allow_private:
        for scheme in ("http://", "https://"):
            http.mount(scheme, GuardedAdapter(is_https_proto=scheme == "https://", allow_loopback=False))
    return http


def signed_headers(secret: str, message_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers; unsigned (id and timestamp only) with no secret."""
    now = now or datetime.now(UTC)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "content-type": "application/json",
    }
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(message_id, now, body)
    return headers


def event_body(event_type: str, data: dict[str, Any], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return json.dumps(
        {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def message_id(task_id: str, status: str) -> str:
    # Stable across retries, so receivers can drop duplicates (at-least-once delivery).
    return f"msg_{uuid.uuid5(uuid.NAMESPACE_URL, f'{task_id}/{status}').hex}"


def deliver(http: requests.Session, url: str, body: str, headers: dict[str, str]) -> Delivery:
    try:
        response = http.post(url, data=body.encode(), headers=headers, timeout=TIMEOUT_SECONDS,
                             allow_redirects=False)
    except InvalidIPAddress:
        return Delivery(False, None, False, "the address is not allowed")
    except (requests.Timeout, requests.ConnectionError) as exc:
        return Delivery(False, None, True, f"{exc.__class__.__name__}")
    except requests.RequestException as exc:
        return Delivery(False, None, False, f"{exc.__class__.__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the request could not even be made: an attempt all the same
        log.warning("webhook to %s could not be sent: %r", url, exc)
        return Delivery(False, None, True, f"the request could not be made ({exc.__class__.__name__})")
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(True, status, False, "delivered")
    retryable = status >= 500 or status in RETRY_STATUSES
    retry_after = (parse_retry_after(response.headers.get("Retry-After"))
                   if status in RETRY_AFTER_STATUSES else None)
    return Delivery(False, status, retryable, f"HTTP {status}", retry_after)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110).
    None when absent or unreadable; a date in the past is 0."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(attempts: int, schedule: Sequence[int], retry_after: float | None = None,
                retry_after_max: float = 3600) -> float:
    """Seconds from now before the attempt after ``attempts`` made ones.

    ``schedule[n]`` is the wait before attempt n + 1 (``schedule[0]``, the first attempt's, is
    normally 0); past the end of the list the last entry repeats. A receiver's ``Retry-After``
    is honoured when it asks for longer, up to ``retry_after_max``, so that a hostile or
    mistaken header cannot park a delivery for days."""
    scheduled = float(schedule[min(attempts, len(schedule) - 1)]) if schedule else 0.0
    if retry_after is None:
        return scheduled
    return max(scheduled, min(retry_after, float(retry_after_max)))


def job_event(job: Any, result: Any, secret: str) -> tuple[str, dict[str, str]]:
    """The body and headers of a finished job's event (``job``: a ``pipeline.jobs.Job``,
    ``result``: its ``Transcript`` or None). The message id is stable across attempts and
    redeliveries, so receivers can drop duplicates."""
    summary = None
    if job.status == "completed" and result is not None:
        summary = {
            "text": result.text[:500],
            "truncated": len(result.text) > 500,
            "language": result.language,
            "duration": result.duration,
            "segments": len(result.segments),
        }
    status = str(job.status)
    data = {
        "task_id": job.task_id,
        "status": status,
        "result_url": job.result_url if status == "completed" else None,
        "cached": job.cached,
        "error": job.error,
        "transcript": summary,
    }
    msg_id = message_id(job.task_id, status)
    body = event_body(f"transcription.{status}", data)
    headers = signed_headers(secret, msg_id, body)
    auth_name = job.extra.get("webhook_auth_header_name")
    auth_value = job.extra.get("webhook_auth_header_value")
    # Checked again here: a job recorded before the allow-list (or written to Redis by hand)
    # still never sends another header.
    if auth_name and auth_value and str(auth_name).lower() in AUTH_HEADER_NAMES:
        headers[str(auth_name)] = str(auth_value)
    return body, headers
