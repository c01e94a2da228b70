"""The page at ``/`` in a real browser against the real service: upload, live progress,
transcript, downloads, cancelling and errors.

The browser is Debian's Chromium (``apt-get install -y chromium``) driven by Playwright's
Python package; Playwright's own browser downloads are not used. ``CHROMIUM`` names another
binary. ``UPDATE_SCREENSHOT=1`` also saves the page after a transcription as
``docs/screenshot.png``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import srt
import webvtt

from tests.support.browser import browser_page, download, page_text, task_id_of
from tests.support.helpers import ROOT, SPEECH_EN, SPEECH_EN_TEXT, long_speech, says_number, wer
from tests.support.stack import Stack

SCREENSHOT = ROOT / "docs" / "screenshot.png"
STATUS = "/api/transcribe/async/status/"

# Records what the job panel showed, mutation by mutation, for assertions afterwards.
WATCH_JOB_PANEL = """() => {
  window.seen = [];
  const $ = (id) => document.getElementById(id);
  const note = () => window.seen.push({
    status: $('status').textContent,
    upload: $('upload-meter').hidden ? null : $('upload-progress').value,
    job: $('job-progress').hasAttribute('value') ? $('job-progress').value : null,
    segments: document.querySelectorAll('#segments li').length,
    done: !$('result-tools').hidden,
  });
  new MutationObserver(note).observe($('job'), {
    subtree: true, childList: true, characterData: true, attributes: true });
}"""


def test_page_transcribes_with_live_progress_and_downloads(live: Stack, chromium: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(chromium, live) as page:
        response = page.goto("/")
        assert response.status == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        expect(page.get_by_label("Model")).to_have_value("tiny.en")
        page.evaluate(WATCH_JOB_PANEL)

        page.set_input_files("#file", str(SPEECH_EN))
        expect(page.locator("#file-name")).to_contain_text("speech_en.wav")
        page.get_by_role("button", name="Transcribe").click()
        expect(page.locator("#status")).to_have_text("Done.", timeout=60_000)
        expect(page.locator("#result-tools")).to_be_visible()
        task_id = task_id_of(page)

        seen = page.evaluate("window.seen")
        statuses = [s["status"] for s in seen]
        assert "Uploading speech_en.wav…" in statuses
        assert max(s["upload"] or 0 for s in seen) == 100
        # Between the upload and the end, the job's own states were shown.
        assert "Transcribing…" in statuses and statuses[-1] == "Done.", statuses
        assert page.locator("#job-progress").get_attribute("value") == "100"
        assert page.locator("#status").get_attribute("aria-live") == "polite"

        api = live.get(f"{STATUS}{task_id}").json()
        assert api["status"] == "completed"
        shown = page_text(page)
        assert wer(SPEECH_EN_TEXT, shown) <= 0.15, shown
        assert page.locator("#segments li").count() == len(api["result"]["segments"])
        expect(page.locator("#job-meta")).to_contain_text("English")
        expect(page.locator("#job-meta")).to_contain_text("faster-whisper tiny.en")

        if os.environ.get("UPDATE_SCREENSHOT"):
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        name, text = download(page, "#dl-text")
        assert name == "speech_en.txt"
        assert text.strip() == api["result"]["text"].strip()
        assert wer(SPEECH_EN_TEXT, text) <= 0.15

        name, subtitles = download(page, "#dl-srt")
        assert name == "speech_en.srt"
        cues = list(srt.parse(subtitles, ignore_errors=False))
        assert cues and cues[-1].end.total_seconds() == pytest.approx(5.9, abs=0.5)
        assert wer(SPEECH_EN_TEXT, " ".join(c.content for c in cues)) <= 0.15

        name, vtt = download(page, "#dl-vtt")
        assert name == "speech_en.vtt" and vtt.startswith("WEBVTT")
        captions = webvtt.from_buffer(io.StringIO(vtt)).captions
        assert len(captions) == len(cues)

        name, raw = download(page, "#dl-json")
        assert name == "speech_en.json"
        body = json.loads(raw)
        assert body["text"] == api["result"]["text"]
        assert [s["text"] for s in body["segments"]] == [s["text"] for s in api["result"]["segments"]]

        # With an API key, every request carries it, downloads included; the key is remembered
        # and the address reopens the job.
        page.locator("#key-details summary").click()
        page.fill("#api-key", "test-key")
        page.locator("#api-key").dispatch_event("change")
        with page.expect_request(lambda r: "format=srt" in r.url) as request:
            name, again = download(page, "#dl-srt")
        assert request.value.all_headers().get("authorization") == "Bearer test-key"
        assert again == subtitles
        with page.expect_request(lambda r: STATUS in r.url) as request:
            page.reload()
        assert request.value.all_headers().get("authorization") == "Bearer test-key"
        expect(page.locator("#api-key")).to_have_value("test-key")
        expect(page.locator("#status")).to_have_text("Done.")
        assert page_text(page) == shown
        expect(page.locator("#recent-list")).to_contain_text("speech_en.wav")

        # The same recording with the same options again: answered from the cache at once.
        page.set_input_files("#file", str(SPEECH_EN))
        page.get_by_role("button", name="Transcribe").click()
        expect(page.locator("#status")).to_contain_text("from the cache")
        assert task_id_of(page) != task_id
        assert page_text(page) == shown


def test_page_cancels_a_running_job(live: Stack, chromium: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    # Long enough to be still running after its first segments arrive: at the defaults it is
    # split across both transcribers and decoded in batches, so segments come a batch at a time.
    recording = long_speech(tmp_path / "long.wav", 40)
    with browser_page(chromium, live) as page:
        page.goto("/")
        page.set_input_files("#file", str(recording))
        page.get_by_role("button", name="Transcribe").click()
        # Segments appear while the job runs, with the bar part of the way.
        page.wait_for_selector("#segments li", timeout=60_000)
        expect(page.locator("#status")).to_have_text("Transcribing…")
        progress = float(page.locator("#job-progress").get_attribute("value") or 0)
        assert 0 < progress < 100
        assert page.locator("#result-tools").is_hidden()
        task_id = task_id_of(page)

        with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
            page.get_by_role("button", name="Cancel").click()
        assert answer.value.status == 202
        expect(page.locator("#status")).to_have_text("Cancelled.")
        expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
        expect(page.locator("#job-meta")).to_contain_text("decoded before the job stopped")
        assert page.locator("#segments li").count() >= 1
        assert live.get(f"{STATUS}{task_id}").json()["status"] == "cancelled"


def test_page_explains_refusals(live: Stack, chromium: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    notes = tmp_path / "notes.txt"
    notes.write_text("just some words\n" * 50)
    with browser_page(chromium, live) as page:
        page.goto("/")
        error = page.get_by_role("alert")

        page.get_by_role("button", name="Transcribe").click()
        expect(error).to_have_text("Choose a recording first.")

        # A file dropped on the box is the file chosen.
        page.locator("#dropzone").dispatch_event("drop", {"dataTransfer": page.evaluate_handle(
            "() => { const d = new DataTransfer();"
            " d.items.add(new File(['x'], 'dropped.ogg', {type: 'audio/ogg'})); return d; }")})
        expect(page.locator("#file-name")).to_have_text("dropped.ogg · 1 B")
        assert page.evaluate("document.getElementById('file').files[0].name") == "dropped.ogg"

        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.set_input_files("#file", str(notes))
            page.get_by_role("button", name="Transcribe").click()
        assert answer.value.status == 415
        message = answer.value.json()["error"]["message"]
        expect(error).to_contain_text("The service did not accept the file.")
        expect(error).to_contain_text(message)
        assert "not audio or video" in message
        expect(page.locator("#job")).to_be_hidden()

        # An option the model cannot honour: the API's words, and the field is marked.
        page.set_input_files("#file", str(SPEECH_EN))
        page.get_by_label("Language").select_option("de")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Transcribe").click()
        assert answer.value.status == 422
        expect(error).to_contain_text("Please check the options.")
        expect(error).to_contain_text(answer.value.json()["error"]["message"])
        expect(page.get_by_label("Language")).to_have_attribute("aria-invalid", "true")


def test_page_falls_back_to_polling_when_the_stream_fails(live: Stack, chromium: Any) -> None:
    from playwright.sync_api import expect

    with browser_page(chromium, live) as page:
        page.route("**/events", lambda route: route.abort())
        page.goto("/")
        with page.expect_request(lambda r: STATUS in r.url):
            page.set_input_files("#file", str(SPEECH_EN))
            page.get_by_role("button", name="Transcribe").click()
        expect(page.locator("#status")).to_have_text("Done.", timeout=60_000)
        assert wer(SPEECH_EN_TEXT, page_text(page)) <= 0.15


def test_page_sends_hotwords_channels_and_redaction_and_offers_the_redacted_audio(
        live: Stack, chromium: Any) -> None:
    from playwright.sync_api import expect

    from tests.support.helpers import FIXTURES

    recording = FIXTURES / "speech_number.wav"  # "Our meeting has 42 people. ..."
    with browser_page(chromium, live) as page:
        page.goto("/")
        page.set_input_files("#file", str(recording))
        page.get_by_label("Hotwords").fill("meeting, people")
        page.get_by_label("Channels apart").check()
        page.get_by_label("Redact", exact=True).check()
        page.get_by_label("Any number").check()
        page.get_by_label("Redacted audio").check()
        # What the page puts in the upload (the browser does not show a multipart body with a file).
        page.evaluate("""() => { window.sentFields = {}; const append = FormData.prototype.append;
          FormData.prototype.append = function (k, v, ...rest) {
            window.sentFields[k] = typeof v === 'string' ? v : '(file)';
            return append.call(this, k, v, ...rest); }; }""")
        page.get_by_role("button", name="Transcribe").click()
        sent = page.evaluate("window.sentFields")
        names = ("hotwords", "multichannel", "redact_pii", "redact_pii_sub", "redact_pii_audio")
        assert {k: sent[k] for k in names} == {
            "hotwords": "meeting, people", "multichannel": "true", "redact_pii": "true",
            "redact_pii_sub": "entity_name", "redact_pii_audio": "true"}
        assert {"number", "email_address"} <= set(sent["redact_pii_policies"].split(","))
        expect(page.locator("#status")).to_have_text("Done.", timeout=60_000)
        text = page_text(page)
        assert "[NUMBER]" in text and not says_number(text)
        expect(page.locator("#segments .channel").first).to_have_text("Channel 1")
        expect(page.locator("#job-meta")).to_contain_text("1 channel")
        link = page.locator("#dl-redacted-audio")
        expect(link).to_be_visible()
        with page.expect_download() as info:
            link.click()
        assert info.value.suggested_filename == "speech_number.redacted.wav"
        assert Path(info.value.path()).read_bytes()[:4] == b"RIFF"
