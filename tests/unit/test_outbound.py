"""The outbound-address guard (pipeline/webhooks.py) over every form an address can be written
in: checked at submit (``check_url``) and again on the address a delivery connects to (the
session), so that a form that slips past one is still refused by the other."""

from __future__ import annotations

import ipaddress

import pytest

from pipeline import webhooks
from pipeline.errors import BadRequest

# Each form of an internal address, and what it is.
REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback, short form"),
    ("http://2130706433/", "loopback in decimal"),
    ("http://0177.0.0.1/", "loopback in octal"),
    ("http://0x7f.0.0.1/", "loopback in hex, by part"),
    ("http://0x7f000001/", "loopback in hex"),
    ("http://0/", "0.0.0.0, short form"),
    ("http://0.0.0.0/", "this host"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/", "metadata"),
    ("http://2852039166/", "metadata in decimal"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[::1]/", "IPv6 loopback"),
    ("http://[::]/", "IPv6 unspecified"),
    ("http://[::127.0.0.1]/", "IPv4-compatible loopback"),
    ("http://[::7f00:1]/", "IPv4-compatible loopback, in hex"),
    ("http://[::169.254.169.254]/", "IPv4-compatible metadata"),
    ("http://[::8.8.8.8]/", "IPv4-compatible, any (deprecated form)"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback"),
    ("http://[::ffff:7f00:1]/", "IPv4-mapped loopback, in hex"),
    ("http://[0:0:0:0:0:ffff:169.254.169.254]/", "IPv4-mapped metadata, long form"),
    ("http://[::ffff:10.0.0.1]/", "IPv4-mapped private"),
    ("http://[::ffff:0.0.0.0]/", "IPv4-mapped this host"),
    ("http://[2002:7f00:1::]/", "6to4 of loopback"),
    ("http://[2002:a9fe:a9fe::]/", "6to4 of metadata"),
    ("http://[2002:808:808::]/", "6to4 of a public address (a relay's business)"),
    ("http://[64:ff9b::10.0.0.1]/", "NAT64 of a private address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 of metadata"),
    ("http://[64:ff9b::127.0.0.1]/", "NAT64 of loopback"),
    ("http://[64:ff9b:1::a00:1]/", "local-use NAT64"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "Teredo, client 127.0.0.1"),
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "Teredo, client 10.0.0.1"),
    ("http://[fe80::1]/", "IPv6 link-local"),
    ("http://[fc00::1]/", "IPv6 unique local"),
    ("http://[fd00:ec2::254]/", "IPv6 metadata (EC2)"),
    ("http://[ff02::1]/", "IPv6 multicast"),
    ("http://[100::1]/", "IPv6 discard"),
    ("http://[2001:db8::1]/", "IPv6 documentation"),
    ("http://[5f00::1]/", "IPv6 segment routing"),
]
ALLOWED = [
    ("http://8.8.8.8/", "public IPv4"),
    ("http://134744072/", "public IPv4 in decimal"),
    ("http://[2606:4700:4700::1111]/", "public IPv6"),
    ("http://[::ffff:8.8.8.8]/", "IPv4-mapped public"),
]


@pytest.mark.parametrize(("url", "what"), REFUSED)
def test_every_form_of_an_internal_address_is_refused_at_submit(url: str, what: str) -> None:
    with pytest.raises(BadRequest) as refused:
        webhooks.check_url(url, allow_private=False)
    assert refused.value.field == "webhook_url", what


@pytest.mark.parametrize(("url", "what"), REFUSED)
def test_every_form_of_an_internal_address_is_refused_at_delivery(url: str, what: str) -> None:
    # As for a job recorded before a check existed: the session refuses before it connects.
    http = webhooks.session(allow_private=False)
    delivery = webhooks.deliver(http, url, "{}", {"content-type": "application/json"})
    assert not delivery.delivered and not delivery.retryable, what
    assert delivery.detail == "the address is not allowed", (what, delivery.detail)


@pytest.mark.parametrize(("url", "what"), ALLOWED)
def test_a_public_address_passes_the_check(url: str, what: str) -> None:
    assert webhooks.check_url(url, allow_private=False) == url, what


@pytest.mark.parametrize(("address", "inner"), [
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("::127.0.0.1", "127.0.0.1"),
    ("2002:7f00:1::", "127.0.0.1"),
    ("64:ff9b::10.0.0.1", "10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
    ("2606:4700:4700::1111", None),
])
def test_every_embedding_ipaddress_knows_is_read(address: str, inner: str | None) -> None:
    embeds, found = webhooks.embedded_ipv4(ipaddress.IPv6Address(address))
    assert embeds is (inner is not None)
    assert found == (ipaddress.IPv4Address(inner) if inner else None)
