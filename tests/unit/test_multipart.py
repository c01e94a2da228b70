"""client/multipart.py: the streamed multipart/form-data body, read back by the same parser the API uses."""

from __future__ import annotations

import io
from itertools import accumulate
from pathlib import Path

import pytest
from werkzeug.formparser import parse_form_data

from client.multipart import MultipartBody


def parse(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """(form fields, {file field: (file name, bytes)}) as Flask would see the request."""
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    _, form, files = parse_form_data(environ)
    return dict(form), {name: (str(f.filename), f.read()) for name, f in files.items()}


def recording(tmp_path: Path, data: bytes, name: str = "talk.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_body_carries_the_fields_and_the_file(tmp_path: Path) -> None:
    audio = bytes(range(256)) * 300  # every byte value, and more than one read's worth
    body = MultipartBody({"language": "en", "word_timestamps": "true"}, "file", recording(tmp_path, audio))
    try:
        raw = body.read()
    finally:
        body.close()
    assert len(raw) == len(body) == body.total
    form, files = parse(raw, body.content_type)
    assert form == {"language": "en", "word_timestamps": "true"}
    assert files == {"file": ("talk.wav", audio)}


def test_small_reads_give_the_same_bytes_as_one_read(tmp_path: Path) -> None:
    path = recording(tmp_path, b"RIFF" + b"\x00" * 1000)
    whole = MultipartBody({"a": "1"}, "file", path)
    pieces = MultipartBody({"a": "1"}, "file", path)
    try:
        one = whole.read()
        chunks: list[bytes] = []
        while chunk := pieces.read(7):
            assert len(chunk) <= 7
            chunks.append(chunk)
    finally:
        whole.close()
        pieces.close()
    many = b"".join(chunks)
    # Each body has a boundary of its own, so compare what a server reads out of them.
    assert len(many) == len(one)
    assert parse(many, pieces.content_type) == parse(one, whole.content_type)


def test_progress_counts_up_to_the_total_and_stops_there(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    path = recording(tmp_path, b"x" * 200_000)
    body = MultipartBody({}, "file", path, lambda sent, total: seen.append((sent, total)))
    try:
        blocks = list(body)
        assert body.read(10) == b""  # after the end: nothing, and no progress call
    finally:
        body.close()
    assert [len(b) for b in blocks[:-1]] == [64 * 1024] * (len(blocks) - 1)
    assert [sent for sent, _ in seen] == list(accumulate(len(b) for b in blocks))
    assert seen[-1] == (body.total, body.total)
    assert {total for _, total in seen} == {body.total}


def test_an_empty_file_is_still_a_file_part(tmp_path: Path) -> None:
    body = MultipartBody({"model": "tiny"}, "file", recording(tmp_path, b"", "empty.mp3"))
    try:
        raw = body.read(-1)
    finally:
        body.close()
    assert len(raw) == body.total
    assert parse(raw, body.content_type) == ({"model": "tiny"}, {"file": ("empty.mp3", b"")})


def test_a_file_name_with_quotes_and_accents_survives(tmp_path: Path) -> None:
    path = recording(tmp_path, b"abc", 'réunion "final".m4a')
    body = MultipartBody({}, "file", path)
    try:
        raw = body.read()
    finally:
        body.close()
    assert parse(raw, body.content_type)[1] == {"file": ('réunion "final".m4a', b"abc")}


def test_a_file_that_is_not_there_fails_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MultipartBody({}, "file", tmp_path / "missing.wav")
