"""The page's Live mode in a real Chromium whose microphone is a fake capture device playing
JFK (Chromium reads a WAV file: it is made from jfk.flac for the test), against the real stack."""

from __future__ import annotations

import os
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.media import decode_audio
from tests.support.browser import CHROMIUM_ARGS, browser_page
from tests.support.helpers import JFK_TEXT, wer
from tests.support.stack import Stack

# What the page showed, mutation by mutation: the turn in progress and the completed turns.
WATCH_LIVE = """() => {
  window.liveSeen = [];
  const note = () => window.liveSeen.push({
    partial: document.getElementById('live-partial').textContent,
    turns: document.querySelectorAll('#live-turns li').length,
  });
  new MutationObserver(note).observe(document.getElementById('live'), {
    subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def jfk_wav(tmp_path_factory: pytest.TempPathFactory, jfk: Path) -> Path:
    path = tmp_path_factory.mktemp("fake-microphone") / "jfk.wav"
    audio = (np.clip(decode_audio(jfk), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(audio.tobytes())
    return path


@pytest.fixture(scope="module")
def jfk() -> Path:
    from tests.support.helpers import SHARED_AUDIO

    path = SHARED_AUDIO / "jfk.flac"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def chromium_with_microphone(jfk_wav: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(f"Chromium is not installed ({path} is missing): apt-get install -y chromium")
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={jfk_wav}%noloop", "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=args)
        try:
            yield browser
        finally:
            browser.close()


def test_live_mode_shows_text_as_it_is_spoken(live: Stack, chromium_with_microphone: Any) -> None:
    from playwright.sync_api import expect

    with browser_page(chromium_with_microphone, live) as page:
        page.goto("/")
        page.select_option("#language", "en")
        page.evaluate(WATCH_LIVE)
        page.click("#live-start")
        expect(page.locator("#live-status")).to_have_text("Listening…", timeout=30_000)
        # JFK's four phrases end at his pauses: turns appear one by one while he speaks.
        expect(page.locator("#live-turns li")).to_have_count(4, timeout=60_000)
        page.click("#live-stop")
        expect(page.locator("#live-status")).to_have_text("Stopped.", timeout=30_000)
        expect(page.locator("#live-start")).to_be_visible()
        turns = page.locator("#live-turns .segment-text").all_inner_texts()
        times = page.locator("#live-turns .times").all_inner_texts()
        seen = page.evaluate("window.liveSeen")
    assert wer(JFK_TEXT, " ".join(turns)) <= 0.25, turns
    assert times == sorted(times) and times[0].startswith("00:0"), times
    # Text of a turn in progress showed before that turn was complete.
    assert any(s["partial"] for s in seen), "no text appeared before a turn completed"
