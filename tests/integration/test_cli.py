"""The installed `whisper-pipeline` command against the real service: real gunicorn, Dramatiq
workers, Redis and RabbitMQ, with the script run as a user runs it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Generator
from pathlib import Path

import pytest
import srt
import webvtt

from client import UNREACHABLE, ApiError, Client, Event
from client.cli import EXIT_TIMEOUT
from client.progress import Progress
from client.wait import wait_for_job
from pipeline.tooling.stack import free_port as _free_port
from tests.support.helpers import SPEECH_EN, SPEECH_EN_TEXT, long_speech, says_number, silent_wav_header, wer
from tests.support.stack import Stack

SCRIPT = Path(sys.executable).parent / "whisper-pipeline"


# The user's own settings must not leak into the tests.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_PIPELINE_")}


def cli(stack: Stack | str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    url = stack if isinstance(stack, str) else stack.url
    return subprocess.run([str(SCRIPT), "--url", url, *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def test_submit_wait_writes_every_format(live: Stack, tmp_path: Path) -> None:
    text = cli(live, "submit", str(SPEECH_EN), "--wait", "--format", "text")
    assert text.returncode == 0, text.stderr
    assert wer(SPEECH_EN_TEXT, text.stdout) <= 0.15
    # Not a terminal: one line per state change, in order, on stderr only.
    states = [line.split(": ", 1)[1] for line in text.stderr.splitlines() if ": " in line]
    assert states[-1] == "completed" and "transcribing" in states, text.stderr
    assert text.stderr.splitlines()[0].startswith("submitted ")

    subtitles = tmp_path / "out.srt"
    run = cli(live, "submit", str(SPEECH_EN), "--wait", "--format", "srt", "-o", str(subtitles))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    cues = list(srt.parse(subtitles.read_text(), ignore_errors=False))
    assert cues and cues[-1].end.total_seconds() == pytest.approx(5.9, abs=0.6)
    assert wer(SPEECH_EN_TEXT, " ".join(c.content for c in cues)) <= 0.15

    vtt = cli(live, "submit", str(SPEECH_EN), "--wait", "--format", "vtt", "--quiet")
    assert vtt.returncode == 0 and vtt.stderr == ""
    captions = webvtt.from_buffer(io.StringIO(vtt.stdout)).captions
    assert len(captions) == len(cues)
    assert wer(SPEECH_EN_TEXT, " ".join(c.text for c in captions)) <= 0.15

    as_json = cli(live, "submit", str(SPEECH_EN), "--wait", "--format", "json")
    assert as_json.returncode == 0
    assert wer(SPEECH_EN_TEXT, json.loads(as_json.stdout)["text"]) <= 0.15
    out = tmp_path / "out.json"
    run = cli(live, "submit", str(SPEECH_EN), "--wait", "-o", str(out))  # json is the default
    body = json.loads(out.read_text())
    assert run.returncode == 0 and body["language"] == "en" and body["segments"]
    out = tmp_path / "out.txt"
    run = cli(live, "submit", str(SPEECH_EN), "--wait", "--format", "text", "-o", str(out))
    assert run.returncode == 0 and wer(SPEECH_EN_TEXT, out.read_text()) <= 0.15


def test_progress_bar_on_a_terminal(live: Stack) -> None:
    # stderr is a terminal here: tqdm draws the upload and the job's progress; stdout stays clean.
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    drawn = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        run = subprocess.run([str(SCRIPT), "submit", str(SPEECH_EN), "--wait", "--format", "text",
                              "--beam-size", "2", "--url", live.url],
                             stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120, env=ENV)
    finally:
        os.close(follower)
        reader.join(timeout=5)
        os.close(leader)
    assert run.returncode == 0
    assert wer(SPEECH_EN_TEXT, run.stdout) <= 0.15
    screen = drawn.decode(errors="replace")
    assert "uploading" in screen and "100%" in screen and "|" in screen, screen


def test_status_result_list_and_cancel(live: Stack, tmp_path: Path) -> None:
    submitted = cli(live, "submit", str(SPEECH_EN), "--language", "en", "--word-timestamps")
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert task_id and "\n" not in task_id

    waited = cli(live, "result", task_id, "--wait", "--format", "srt", "-q")
    assert waited.returncode == 0, waited.stderr
    assert list(srt.parse(waited.stdout))

    status = cli(live, "status", task_id)
    assert status.returncode == 0
    body = json.loads(status.stdout)
    assert body["status"] == "completed" and body["task_id"] == task_id and body["language"] == "en"
    assert wer(SPEECH_EN_TEXT, body["result"]["text"]) <= 0.15

    verbose = cli(live, "result", task_id, "--format", "verbose_json")
    assert verbose.returncode == 0 and json.loads(verbose.stdout)["words"]
    tsv = cli(live, "result", task_id, "--format", "tsv")
    assert tsv.returncode == 0 and tsv.stdout.splitlines()[0] == "start\tend\ttext"

    listed = cli(live, "list", "--limit", "5")
    assert listed.returncode == 0
    header, first, *_ = listed.stdout.splitlines()
    assert header.split()[:2] == ["TASK_ID", "STATUS"]
    assert first.split()[:2] == [task_id, "completed"] and first.endswith(SPEECH_EN.name)
    page = json.loads(cli(live, "list", "--status", "completed", "--limit", "2", "--json").stdout)
    assert page["jobs"][0]["task_id"] == task_id and len(page["jobs"]) <= 2
    assert all(job["status"] == "completed" for job in page["jobs"])

    # Cancelling a finished job is refused with the service's reason.
    finished = cli(live, "cancel", task_id)
    assert finished.returncode == 5
    assert "already completed" in finished.stderr and "409" in finished.stderr

    # A job cancelled before it ran: cancel answers at once; waiting on it reports the cancellation.
    queued = cli(live, "submit", str(long_speech(tmp_path / "long.wav", 3)), "--beam-size", "3").stdout.strip()
    cancelled = cli(live, "cancel", queued)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{queued} cancelled"
    assert json.loads(cli(live, "status", queued).stdout)["status"] == "cancelled"
    after = cli(live, "result", queued, "--wait")
    assert after.returncode == 1 and "cancelled" in after.stderr and after.stdout == ""
    not_ready = cli(live, "result", queued)
    assert not_ready.returncode == 5 and "cancelled" in not_ready.stderr


def test_exit_codes_for_scripts(live: Stack, tmp_path: Path) -> None:
    for args in (("status", "nope"), ("result", "nope"), ("cancel", "nope")):
        missing = cli(live, *args)
        assert missing.returncode == 4, (args, missing.stderr)
        assert "No job with id nope" in missing.stderr

    notes = tmp_path / "notes.mp3"
    notes.write_bytes(b"just some words\n" * 50)
    refused = cli(live, "submit", str(notes), "--wait")
    assert refused.returncode == 5 and refused.stdout == ""
    assert "The file is not audio or video" in refused.stderr and "415" in refused.stderr

    bad_option = cli(live, "submit", str(SPEECH_EN), "--engine", "whisperx")
    assert bad_option.returncode == 5 and "(HTTP 422)" in bad_option.stderr
    assert "faster-whisper" in bad_option.stderr and "[field: engine]" in bad_option.stderr

    nowhere = cli(f"http://127.0.0.1:{_free_port()}", "status", "abc", timeout=30)
    assert nowhere.returncode == 3 and "Could not reach" in nowhere.stderr

    hollow = silent_wav_header(tmp_path / "hollow.wav")
    failed = cli(live, "submit", str(hollow), "--wait", "--format", "text")
    assert failed.returncode == 1 and failed.stdout == ""
    assert "failed: No audio could be decoded from the file. (media_decode_error)" in failed.stderr

    usage = cli(live, "submit", str(tmp_path / "absent.wav"))
    assert usage.returncode == 2 and "is not a file" in usage.stderr
    assert cli(live, "submit", str(SPEECH_EN), "--format", "docx").returncode == 2

    # Gives up waiting with 6, naming the job, which goes on and can then be cancelled.
    long = long_speech(tmp_path / "long.wav", 6)
    slow = cli(live, "submit", str(long), "--wait", "--wait-timeout", "0.5", "--beam-size", "5")
    assert slow.returncode == EXIT_TIMEOUT, slow.stderr
    task_id = slow.stderr.split("waiting for job ", 1)[1].split(";", 1)[0]
    stopped = cli(live, "cancel", task_id)
    assert stopped.returncode == 0, stopped.stderr
    assert live.wait_final(task_id)["status"] == "cancelled"


def test_help_documents_the_exit_codes() -> None:
    run = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, env=ENV)
    assert run.returncode == 0
    for line in ("0  success", "1  the job failed", "3  the service cannot be reached", "4  not found",
                 "5  request refused", "6  timed out"):
        assert line in run.stdout
    assert subprocess.run([str(SCRIPT)], capture_output=True, timeout=30, env=ENV).returncode == 2


def test_waiting_falls_back_to_polling_when_the_stream_breaks(live: Stack) -> None:
    class Broken(Client):
        def events(self, task_id: str, *, read_timeout: float | None = None) -> Generator[Event, None, None]:
            raise ApiError(None, UNREACHABLE, "the stream broke")

    client = Broken(live.url)
    task_id = client.submit(SPEECH_EN, {"beam_size": 1})["task_id"]
    started = time.monotonic()
    summary = wait_for_job(client, task_id, Progress(io.StringIO(), enabled=False), timeout=60)
    assert summary["status"] == "completed" and time.monotonic() - started < 60
    assert wer(SPEECH_EN_TEXT, client.result(task_id, "text").decode()) <= 0.15


def test_transcript_options_and_the_views_of_result(live: Stack, tmp_path: Path) -> None:
    import srt

    from tests.support.helpers import FIXTURES

    recording = FIXTURES / "speech_number.wav"  # "Our meeting has 42 people. Thank you for coming."
    run = cli(live, "submit", str(recording), "--wait", "-q", "--format", "text", "--multichannel",
              "--hotwords", "meeting", "--redact-pii-policies", "number", "--redact-pii-audio",
              "--custom-spelling", '[{"from": ["coming"], "to": "joining us"}]')
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Channel 1: ") and "[NUMBER]" in run.stdout and not says_number(run.stdout)
    assert "joining us" in run.stdout
    task_id = cli(live, "list", "--limit", "1", "--json").stdout.split('"task_id": "')[1].split('"')[0]

    sentences = json.loads(cli(live, "result", task_id, "--sentences").stdout)["sentences"]
    assert [s["channel"] for s in sentences] == [1] * len(sentences) and len(sentences) >= 2
    assert "[NUMBER]" in sentences[0]["text"]
    paragraphs = json.loads(cli(live, "result", task_id, "--paragraphs").stdout)["paragraphs"]
    assert " ".join(p["text"] for p in paragraphs) == " ".join(s["text"] for s in sentences)
    matches = json.loads(cli(live, "result", task_id, "--search", "People, number,42").stdout)["matches"]
    assert [m["count"] for m in matches] == [1, 1, 0]  # "[NUMBER]" is a word now; 42 is gone
    audio = tmp_path / "redacted.wav"
    assert cli(live, "result", task_id, "--redacted-audio", "-o", str(audio)).returncode == 0
    assert audio.read_bytes()[:4] == b"RIFF"
    cues = list(srt.parse(cli(live, "result", task_id, "--format", "srt", "--chars-per-caption", "16").stdout))
    assert len(cues) >= 3 and all(len(line) <= 16 + len("[Channel 1] ") for c in cues for line in c.content.split("\n"))
    refused = cli(live, "result", task_id, "--format", "json", "--chars-per-caption", "16")
    assert refused.returncode == 5 and "chars_per_caption" in refused.stderr
    assert cli(live, "result", task_id, "--sentences", "--paragraphs").returncode == 2
