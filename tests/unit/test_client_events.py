"""client/events.py: splitting a Server-Sent Events byte stream into (name, data) pairs."""

from __future__ import annotations

from client.events import parse_sse


def events(*chunks: bytes) -> list[tuple[str, str]]:
    return list(parse_sse(iter(chunks)))


def test_an_event_without_a_name_is_a_message() -> None:
    assert events(b"data: {}\n\n") == [("message", "{}")]


def test_data_lines_of_one_event_are_joined_with_newlines() -> None:
    assert events(b"event: segment\ndata: one\ndata: two\n\n") == [("segment", "one\ntwo")]


def test_only_one_space_after_the_colon_is_dropped() -> None:
    assert events(b"data:none\n\ndata:  two\n\n") == [("message", "none"), ("message", " two")]


def test_an_event_with_no_data_is_not_yielded_and_its_name_does_not_carry_over() -> None:
    assert events(b"event: status\n\ndata: x\n\n") == [("message", "x")]


def test_fields_other_than_event_and_data_are_ignored() -> None:
    assert events(b"id: 7\nretry: 1000\nevent: end\ndata: {}\n\n") == [("end", "{}")]


def test_an_event_the_stream_cut_off_before_its_blank_line_is_not_yielded() -> None:
    # Half an event's JSON would fail to parse: wait for the blank line that ends it.
    assert events(b"event: status\ndata: {}\n\nevent: end\ndata: {\"sta") == [("status", "{}")]


def test_chunks_split_anywhere_give_the_same_events() -> None:
    stream = b"event: status\r\ndata: {\"status\": \"queued\"}\r\n\r\n: ping\n\nevent: end\ndata: {}\n\n"
    whole = events(stream)
    assert whole == [("status", '{"status": "queued"}'), ("end", "{}")]
    assert events(*(stream[i:i + 1] for i in range(len(stream)))) == whole


def test_bytes_that_are_not_utf8_are_replaced_not_raised() -> None:
    assert events(b"data: caf\xe9\n\n") == [("message", "caf\ufffd")]

