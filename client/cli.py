"""whisper-pipeline: the command-line client of the whisper-pipeline service.

    whisper-pipeline submit meeting.m4a                      # prints the task id
    whisper-pipeline submit meeting.m4a --wait --format srt -o meeting.srt
    whisper-pipeline status TASK_ID                          # the job's status document (JSON)
    whisper-pipeline result TASK_ID --format text            # the transcript
    whisper-pipeline result TASK_ID --search "budget, next year"  # where words were said (JSON)
    whisper-pipeline result TASK_ID --sentences              # or --paragraphs, --redacted-audio -o x.wav
    whisper-pipeline cancel TASK_ID
    whisper-pipeline list --status failed --limit 5
    whisper-pipeline live meeting.wav                        # turns printed as they are spoken
    arecord -f S16_LE -r 16000 -c 1 -t raw | whisper-pipeline live -

The service is ``--url`` (default: $WHISPER_PIPELINE_URL, else http://localhost:8511); an API
key (``--api-key``, default $WHISPER_PIPELINE_API_KEY) is sent as ``Authorization: Bearer``.
``--wait`` follows the job on the service's event stream (falling back to polling its status
if the stream breaks) and shows progress on stderr: a bar on a terminal, else one line per
state change. The transcript goes to stdout or ``-o``; everything else goes to stderr.

Exit codes:
    0  success
    1  the job failed or was cancelled (submit --wait, result --wait)
    2  usage error (bad command line, FILE unreadable, -o not writable)
    3  the service cannot be reached, or answered with a server error (5xx)
    4  not found (404): no job with that id
    5  request refused (any other 4xx: 415 unsupported media, 422 invalid option,
       409 cancelling a finished job or asking for a transcript that is not ready)
    6  timed out waiting (--wait-timeout passed, or the service stopped answering)
    130 interrupted (Ctrl-C); a job that was submitted goes on running
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client.errors import TIMEOUT, ApiError
from client.http import DEFAULT_URL, FORMATS, Client
from client.progress import Progress
from client.wait import JobEnded, WaitTimeout, number, wait_for_job

log = logging.getLogger("whisper-pipeline")

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_REFUSED = 5
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0  success
  1  the job failed or was cancelled (submit --wait, result --wait)
  2  usage error (bad command line, FILE unreadable, -o not writable)
  3  the service cannot be reached, or answered with a server error (5xx)
  4  not found (404): no job with that id
  5  request refused (other 4xx: unsupported media, invalid option, job already finished, ...)
  6  timed out waiting (--wait-timeout, or the service stopped answering)
  130 interrupted (Ctrl-C); a submitted job goes on running

environment: WHISPER_PIPELINE_URL, WHISPER_PIPELINE_API_KEY
"""

JOB_STATES = ("queued", "extracting", "transcribing", "completed", "failed", "cancelled")


def exit_code(error: ApiError) -> int:
    """The exit status that stands for an API error."""
    if error.status is None:
        return EXIT_TIMEOUT if error.code == TIMEOUT else EXIT_UNAVAILABLE
    if error.status >= 500:
        return EXIT_UNAVAILABLE
    if error.status == 404:
        return EXIT_NOT_FOUND
    return EXIT_REFUSED


def describe(error: ApiError) -> str:
    """An API error in plain words, for stderr."""
    if error.status is None:
        return error.message
    if error.status >= 500:
        lead = f"the service had a problem (HTTP {error.status})"
    elif error.status == 404:
        lead = "not found"
    else:
        lead = f"the service refused the request (HTTP {error.status})"
    field = f" [field: {error.field}]" if error.field else ""
    return f"{lead}: {error.message}{field}"


# -- commands -------------------------------------------------------------------------------


def _write_output(data: bytes, output: str | None) -> None:
    if output and output != "-":
        Path(output).write_bytes(data)
        log.debug("wrote %d bytes to %s", len(data), output)
        return
    sys.stdout.buffer.write(data)
    if data and not data.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()


def _job_ended(exc: JobEnded) -> int:
    summary = exc.summary
    task_id = summary.get("task_id", "")
    status = summary.get("status")
    if status == "failed":
        error = summary.get("error") or {}
        message = error.get("message") or "no reason was given"
        code = f" ({error['code']})" if error.get("code") else ""
        print(f"whisper-pipeline: job {task_id} failed: {message}{code}", file=sys.stderr)
    else:
        print(f"whisper-pipeline: job {task_id} was {status}", file=sys.stderr)
    return EXIT_JOB_FAILED


def _wait_and_write(client: Client, task_id: str, args: argparse.Namespace, progress: Progress) -> int:
    try:
        with progress:
            wait_for_job(client, task_id, progress, args.wait_timeout)
    except WaitTimeout:
        print(f"whisper-pipeline: timed out after {args.wait_timeout:g} s waiting for job {task_id}; "
              f"it goes on: `whisper-pipeline result {task_id} --wait` picks it up", file=sys.stderr)
        return EXIT_TIMEOUT
    except JobEnded as exc:
        return _job_ended(exc)
    except KeyboardInterrupt:
        print(f"whisper-pipeline: interrupted; job {task_id} goes on (`whisper-pipeline cancel {task_id}` "
              "stops it)", file=sys.stderr)
        return EXIT_INTERRUPTED
    _write_output(_fetch(client, task_id, args), args.output)
    return EXIT_OK


def _fetch(client: Client, task_id: str, args: argparse.Namespace) -> bytes:
    """What ``result`` (or ``submit --wait``) asked for: the transcript, or a view over it."""
    view: dict[str, Any] | None = None
    if getattr(args, "sentences", False):
        view = client.sentences(task_id)
    elif getattr(args, "paragraphs", False):
        view = client.paragraphs(task_id)
    elif getattr(args, "search", None) is not None:
        view = client.search(task_id, args.search)
    elif getattr(args, "redacted_audio", False):
        return client.redacted_audio(task_id)
    if view is not None:
        return (json.dumps(view, indent=2, ensure_ascii=False) + "\n").encode()
    return client.result(task_id, args.format, chars_per_caption=args.chars_per_caption, max_lines=args.max_lines)


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "engine": args.engine,
        "model": args.model,
        "language": args.language,
        "task": args.task,
        "word_timestamps": True if args.word_timestamps else None,
        "vad_filter": True if args.vad_filter else None,
        "condition_on_previous_text": True if args.condition_on_previous_text else None,
        "initial_prompt": args.initial_prompt,
        "temperature": args.temperature,
        "beam_size": args.beam_size,
        # A speaker-count hint says the caller wants speakers.
        "diarize": True if args.diarize or args.min_speakers or args.max_speakers else None,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "webhook_url": args.webhook_url,
        "hotwords": args.hotwords,
        "multichannel": True if args.multichannel else None,
        "custom_spelling": args.custom_spelling,
        # A redaction option says the caller wants redaction.
        "redact_pii": True if args.redact_pii or args.redact_pii_policies or args.redact_pii_sub
        or args.redact_pii_audio else None,
        "redact_pii_policies": args.redact_pii_policies,
        "redact_pii_sub": args.redact_pii_sub,
        "redact_pii_audio": True if args.redact_pii_audio else None,
    }
    progress = Progress(sys.stderr, enabled=args.wait and not args.quiet)
    with progress:
        accepted = client.submit(args.file, options, progress=progress.upload if args.wait else None)
    task_id = str(accepted["task_id"])
    if not args.wait:
        print(task_id, flush=True)
        return EXIT_OK
    progress.uploaded(task_id, bool(accepted.get("cached")))
    return _wait_and_write(client, task_id, args, progress)


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    print(json.dumps(client.status(args.task_id), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    body = client.cancel(args.task_id)
    print(f"{body.get('task_id', args.task_id)} {body.get('status', 'cancelled')}")
    return EXIT_OK


def cmd_result(client: Client, args: argparse.Namespace) -> int:
    if args.wait:
        progress = Progress(sys.stderr, enabled=not args.quiet)
        progress.set_task(args.task_id)
        return _wait_and_write(client, args.task_id, args, progress)
    _write_output(_fetch(client, args.task_id, args), args.output)
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.list(status=args.status, limit=args.limit, cursor=args.cursor)
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return EXIT_OK
    jobs = page.get("jobs") or []
    rows = [("TASK_ID", "STATUS", "PROGRESS", "CREATED", "FILE")]
    for job in jobs:
        rows.append((
            str(job.get("task_id", "")),
            str(job.get("status", "")),
            f"{100 * (number(job.get('progress')) or 0):.0f}%",
            str(job.get("created_at") or ""),
            str(job.get("filename") or ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    if page.get("next_cursor"):
        print(f"more: --cursor {page['next_cursor']}", file=sys.stderr)
    return EXIT_OK


def cmd_live(client: Client, args: argparse.Namespace) -> int:
    from client import live

    closed = live.run_live(
        args.url, args.api_key, live.source(args.file, args.rate), rate=args.rate, pace=args.pace,
        model=args.model, language=args.language, prompt=args.prompt, manual=args.no_turn_detection,
        record=args.record, partial=args.partial and sys.stderr.isatty(), out=sys.stdout, err=sys.stderr)
    recording = closed.get("recording")
    if recording:
        print(f"whisper-pipeline: the session's audio is job {recording.get('task_id')} "
              f"({recording.get('status_url')})", file=sys.stderr)
    return EXIT_OK


# -- argument parsing -----------------------------------------------------------------------


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
        return value

    return parse


def _connection_options(parser: argparse._ActionsContainer, *, defaults: bool) -> None:
    """--url, --api-key, --timeout and -v: before the command, or (for convenience) after it."""

    def default(value: object) -> object:
        # A command's copy of an option must not overwrite what was given before the command.
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--url", default=default(os.environ.get("WHISPER_PIPELINE_URL") or DEFAULT_URL),
                        help="the service's base URL (default: $WHISPER_PIPELINE_URL or "
                             f"{DEFAULT_URL})")
    parser.add_argument("--api-key", default=default(os.environ.get("WHISPER_PIPELINE_API_KEY") or None),
                        help="API key, sent as 'Authorization: Bearer KEY' (default: $WHISPER_PIPELINE_API_KEY)")
    parser.add_argument("--timeout", type=_positive(float), default=default(30.0), metavar="SECONDS",
                        help="how long to wait for the service to connect or answer a request (default: 30)")
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="log requests on stderr")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection options (also accepted before the command)")
    _connection_options(group, defaults=False)
    parser = argparse.ArgumentParser(
        prog="whisper-pipeline",
        description="Submit recordings to a whisper-pipeline service and fetch their transcripts.",
        epilog=EPILOG, formatter_class=formatter,
    )
    _connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def waiting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--format", choices=FORMATS, default="json",
                         help="the transcript's format (default: json)")
        sub.add_argument("-o", "--output", metavar="FILE", help="write the transcript here instead of stdout")
        sub.add_argument("--wait-timeout", type=_positive(float), metavar="SECONDS",
                         help="with --wait: give up after this long (exit 6); the job goes on")
        sub.add_argument("-q", "--quiet", action="store_true", help="with --wait: no progress on stderr")
        sub.add_argument("--chars-per-caption", type=int, metavar="N",
                         help="srt and vtt: re-flow the cues to at most N characters a line")
        sub.add_argument("--max-lines", type=int, metavar="N", help="srt and vtt: at most N lines a cue")

    def command(name: str, summary: str, handler: Callable[[Client, argparse.Namespace], int],
                description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=summary, description=description or summary,
                                  epilog=EPILOG, formatter_class=formatter)
        sub.set_defaults(handler=handler)
        return sub

    submit = command("submit", "upload a recording for transcription", cmd_submit,
                     "Upload a recording; print its task id, or with --wait follow the job and write "
                     "its transcript.")
    submit.add_argument("file", type=Path, help="the audio or video file")
    submit.add_argument("--wait", action="store_true",
                        help="follow the job (progress on stderr) and write the transcript when it is done")
    waiting(submit)
    options = submit.add_argument_group("transcription options (default: the service's)")
    options.add_argument("--engine", help="faster-whisper or openai-whisper")
    options.add_argument("--model", help="model name, such as tiny.en or base")
    options.add_argument("--language", help="language code such as en; auto-detected when absent")
    options.add_argument("--task", choices=("transcribe", "translate"))
    options.add_argument("--word-timestamps", action="store_true", help="timestamps for each word")
    options.add_argument("--vad-filter", action="store_true", help="skip silence with voice activity detection")
    options.add_argument("--condition-on-previous-text", action="store_true",
                         help="give each 30 s window the text before it as context (off by default)")
    options.add_argument("--initial-prompt", metavar="TEXT", help="text that primes the decoder")
    options.add_argument("--temperature", type=float, help="sampling temperature, 0 to 1")
    options.add_argument("--beam-size", type=int, help="beam size, 1 to 20")
    options.add_argument("--diarize", action="store_true",
                         help="label who speaks when (SPEAKER_00, ...); --format rttm gives the turns")
    options.add_argument("--min-speakers", type=int, metavar="N", help="with --diarize: at least N speakers")
    options.add_argument("--max-speakers", type=int, metavar="N", help="with --diarize: at most N speakers")
    options.add_argument("--webhook-url", metavar="URL", help="notify this URL when the job ends")
    options.add_argument("--hotwords", metavar="TERMS", help="comma-separated names and terms to favour")
    options.add_argument("--multichannel", action="store_true",
                         help="transcribe each audio channel on its own; turns are labelled by channel")
    options.add_argument("--custom-spelling", metavar="JSON",
                         help='replace words after decoding: [{"from": ["comfy eye"], "to": "ComfyUI"}]')
    options.add_argument("--redact-pii", action="store_true", help="replace personal data in the transcript")
    options.add_argument("--redact-pii-policies", metavar="POLICIES",
                         help="comma-separated: email_address, phone_number, credit_card_number, iban, "
                              "us_social_security_number, ip_address, number (default: all but number)")
    options.add_argument("--redact-pii-sub", choices=("entity_name", "hash"),
                         help="replace with [POLICY_NAME] (default) or #'s")
    options.add_argument("--redact-pii-audio", action="store_true",
                         help="also keep the audio with a tone over what was redacted (result --redacted-audio)")

    command("status", "show a job's status (the service's JSON document)", cmd_status).add_argument("task_id")
    command("cancel", "cancel a job that has not finished", cmd_cancel).add_argument("task_id")

    result = command("result", "download a job's transcript", cmd_result)
    result.add_argument("task_id")
    result.add_argument("--wait", action="store_true", help="wait for the job to finish first")
    waiting(result)
    views = result.add_mutually_exclusive_group()
    views.add_argument("--sentences", action="store_true", help="the transcript in sentences, with times (JSON)")
    views.add_argument("--paragraphs", action="store_true", help="the transcript in paragraphs, with times (JSON)")
    views.add_argument("--search", metavar="WORDS", help="where comma-separated words or phrases were said (JSON)")
    views.add_argument("--redacted-audio", action="store_true",
                       help="the redacted audio (WAV; jobs submitted with --redact-pii-audio); use -o")

    live_cmd = command("live", "stream audio and print the turns as they are spoken", cmd_live,
                       "Stream FILE (or raw 16-bit mono PCM from stdin with '-') to the service's live "
                       "transcription at real-time pace; print each turn when it completes.")
    live_cmd.add_argument("file", metavar="FILE", help="an audio or video file, or - for raw PCM on stdin")
    live_cmd.add_argument("--rate", type=int, choices=(16000, 24000), default=16000,
                          help="the sample rate sent (and of the PCM on stdin) (default: 16000)")
    live_cmd.add_argument("--pace", type=float, default=1.0,
                          help="times real time to send a file at (default: 1; the service refuses "
                               "audio more than LIVE_MAX_AHEAD_SECONDS ahead)")
    live_cmd.add_argument("--model", help="transcription model (default: the service's)")
    live_cmd.add_argument("--language", help="language code such as en")
    live_cmd.add_argument("--prompt", metavar="TEXT", help="text that primes the decoder")
    live_cmd.add_argument("--no-turn-detection", action="store_true",
                          help="one turn, committed at the end, instead of cutting at pauses")
    live_cmd.add_argument("--record", action="store_true",
                          help="make the session's audio an ordinary job too (its id on stderr at the end)")
    live_cmd.add_argument("--partial", action="store_true", help="show the turn in progress on stderr")

    listing = command("list", "list your jobs, newest first", cmd_list)
    listing.add_argument("--status", choices=JOB_STATES, help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=20, help="how many jobs, 1 to 100 (default: 20)")
    listing.add_argument("--cursor", help="the next_cursor of the previous page")
    listing.add_argument("--json", action="store_true", help="print the service's JSON page")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(name)s: %(message)s")
    if getattr(args, "wait_timeout", None) is not None and not args.wait:
        parser.error("--wait-timeout needs --wait")
    if args.command == "submit" and not args.file.is_file():
        parser.error(f"{args.file} is not a file")
    if args.command == "live" and args.file != "-" and not Path(args.file).is_file():
        parser.error(f"{args.file} is not a file")
    output = getattr(args, "output", None)
    if output and output != "-" and not Path(output).resolve().parent.is_dir():
        parser.error(f"the folder of {output} does not exist")
    client = Client(args.url, api_key=args.api_key, timeout=args.timeout)
    handler: Callable[[Client, argparse.Namespace], int] = args.handler
    try:
        return handler(client, args)
    except ApiError as exc:
        print(f"whisper-pipeline: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # reading FILE or writing -o
        print(f"whisper-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("whisper-pipeline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
