"""client/progress.py: plain lines when stderr is not a terminal, tqdm bars when it is, nothing when disabled."""

from __future__ import annotations

import io

from client.progress import Progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal (and, like some ptys, cannot tell its size)."""

    def isatty(self) -> bool:
        return True


def test_off_a_terminal_each_change_of_status_is_one_line() -> None:
    out = io.StringIO()
    with Progress(out) as progress:
        assert not progress.tty
        progress.upload(10, 100)  # no bar to draw, and nothing to say
        progress.uploaded("t1", cached=False)
        progress.job("queued")
        progress.job("transcribing", 0.2)
        progress.job("transcribing", 0.6)
        progress.job("completed", 1.0)
    assert out.getvalue() == "submitted t1\nt1: queued\nt1: transcribing\nt1: completed\n"
    assert progress.status == "completed"


def test_a_cached_answer_is_said_so() -> None:
    out = io.StringIO()
    Progress(out).uploaded("t9", cached=True)
    assert out.getvalue() == "submitted t9 (answered from the cache)\n"


def test_disabled_progress_writes_nothing_even_on_a_terminal() -> None:
    out = Terminal()
    with Progress(out, enabled=False) as progress:
        assert not progress.tty
        progress.upload(1, 2)
        progress.uploaded("t1", cached=True)
        progress.job("queued", 0.5)
        progress.line("hello")
    assert out.getvalue() == ""
    assert progress.status is None  # not tracked either


def test_on_a_terminal_the_upload_bar_makes_way_for_the_submitted_line() -> None:
    out = Terminal()
    with Progress(out) as progress:
        progress.upload(512, 2048)
        progress.upload(2048, 2048)
        progress.uploaded("t1", cached=False)
    text = out.getvalue()
    assert "uploading:" in text and "2.00k" in text
    # The bar is cleared (leave=False) before the line, which stands on its own.
    assert text.endswith("\rsubmitted t1\n")


def test_on_a_terminal_the_job_bar_shows_status_and_clamped_percentage() -> None:
    out = Terminal()
    with Progress(out) as progress:
        progress.set_task("t1")
        progress.job("transcribing", 0.5)
        half = out.getvalue()
        progress.job("transcribing", 1.7)  # past the end: the bar stops at 100%
        progress.line("note")
    text = out.getvalue()
    assert "transcribing   50%|" in half
    assert "transcribing  100%|" in text[len(half):]
    assert "\rnote\n" in text  # written above the bar, not into it
    assert "t1: transcribing" not in text  # the bar says it: no status lines on a terminal


def test_progress_below_zero_is_drawn_as_none() -> None:
    out = Terminal()
    with Progress(out) as progress:
        progress.job("transcribing", 0.8)
        before = out.getvalue()
        progress.job("transcribing", -0.3)
    assert "  0%|" in out.getvalue()[len(before):]
