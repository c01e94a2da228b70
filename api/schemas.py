"""Request and response schemas: they validate requests and are the OpenAPI document's source."""

from __future__ import annotations

import marshmallow as ma
from flask_smorest.fields import Upload

from pipeline import captions, redaction, search, spelling
from pipeline.engine_registry import ENGINE_NAMES
from pipeline.formats import FORMATS
from pipeline.jobs import State
from pipeline.options import LANGUAGES, MAX_HOTWORDS, MAX_HOTWORDS_CHARS, MAX_SPEAKERS, TASKS, is_ascii_number

STATES = [s.value for s in State]
HOTWORDS_HELP = (f"terms to favour, such as product names, comma-separated in one field (at most "
                 f"{MAX_HOTWORDS} terms, {MAX_HOTWORDS_CHARS} characters); openai-whisper adds them "
                 f"to the prompt instead and says so in the result's warnings")


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE  # an unknown field is a mistake worth a 422 naming it


class Integer(ma.fields.Integer):
    """A whole number in ASCII digits: int() alone also takes "1_0" and fullwidth digits."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> int:
        if isinstance(value, str) and not is_ascii_number(value, integer=True):
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class Float(ma.fields.Float):
    """A number in ASCII digits, as ``Integer``."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> float:
        if isinstance(value, str) and not is_ascii_number(value):
            raise self.make_error("invalid")
        return float(super()._deserialize(value, attr, data, **kwargs))


# -- errors ---------------------------------------------------------------------------------
class ErrorBody(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "what went wrong, in words"})
    field = ma.fields.String(metadata={"description": "the request field at fault, when one is"})


class Error(ma.Schema):
    error = ma.fields.Nested(ErrorBody, required=True)


# -- submitting -----------------------------------------------------------------------------
def KNOWN_NAMES() -> ma.fields.List:
    return ma.fields.List(ma.fields.String(), data_key="known_speaker_names[]", metadata={
        "description": "with diarize: names of speakers to recognise, one per known_speaker_references[]"})


def KNOWN_REFERENCES() -> ma.fields.List:
    return ma.fields.List(ma.fields.Raw(), data_key="known_speaker_references[]", metadata={
        "description": "a short clip (1-60 s) of each named speaker: an audio file part sent after "
                       "'file', or a data URL (data:audio/wav;base64,...)"})


class TranscriptFields(ma.Schema):
    """What changes the transcript after decoding, on every submit route (the OpenAI ones too)."""

    multichannel = ma.fields.Boolean(metadata={
        "description": "transcribe each audio channel on its own (at most 8); segments and words carry "
                       "`channel` (from 1) and text and subtitles label turns by channel. Mono input is one "
                       "channel. Not with diarize"})
    custom_spelling = ma.fields.String(metadata={
        "description": f"JSON list of {{\"from\": [\"...\"], \"to\": \"...\"}} (at most {spelling.MAX_RULES}): "
                       "whole words (or phrases) matched without regard to case or punctuation, replaced "
                       "in the text, segments and words after decoding",
        "example": '[{"from": ["comfy eye", "comfy UI"], "to": "ComfyUI"}]'})
    redact_pii = ma.fields.Boolean(metadata={
        "description": "replace personal data found in the text (offline, by pattern) before the "
                       "result is stored or cached"})
    redact_pii_policies = ma.fields.String(metadata={
        "description": f"with redact_pii: comma-separated, of {', '.join(redaction.POLICIES)}; default: "
                       f"{', '.join(redaction.DEFAULT_POLICIES)}"})
    redact_pii_sub = ma.fields.String(validate=ma.validate.OneOf(redaction.SUBSTITUTIONS), metadata={
        "description": "with redact_pii: [POLICY_NAME] (entity_name, default) or a # per character (hash)"})
    redact_pii_audio = ma.fields.Boolean(metadata={
        "description": "with redact_pii: also keep the audio with a tone over each redacted span, as "
                       "16 kHz mono WAV at /api/transcribe/async/{task_id}/redacted-audio"})


class TranscribeForm(Strict, TranscriptFields):
    file = Upload(metadata={"description": "the recording: audio or video in any container FFmpeg "
                            "reads, judged by its content (or give url instead)"})
    url = ma.fields.String(metadata={"description": "http(s) address of the recording to fetch, "
                                     "instead of file; internal addresses are refused"})
    engine = ma.fields.String(validate=ma.validate.OneOf(ENGINE_NAMES),
                              metadata={"description": "default: DEFAULT_ENGINE (faster-whisper)"})
    model = ma.fields.String(metadata={"description": "tiny.en (default), base, a local path, or "
                                       "a name the engine downloads where the hub is reachable"})
    language = ma.fields.String(metadata={"description": "language code; absent or 'auto' detects",
                                          "enum": ["auto", *sorted(LANGUAGES)]})
    task = ma.fields.String(validate=ma.validate.OneOf(TASKS))
    word_timestamps = ma.fields.Boolean()
    vad_filter = ma.fields.Boolean(metadata={"description": "skip silence with Silero VAD"})
    condition_on_previous_text = ma.fields.Boolean(metadata={
        "description": "give each 30 s window the text before it as context (default false: a "
                       "misheard window then cannot make the next one repeat it)"})
    initial_prompt = ma.fields.String(metadata={
        "description": "text that steers the first window (every window with "
                       "condition_on_previous_text)"})
    hotwords = ma.fields.String(metadata={"description": HOTWORDS_HELP})
    temperature = Float(validate=ma.validate.Range(0, 1))
    beam_size = Integer(validate=ma.validate.Range(1, 20))
    batch_size = ma.fields.Raw(metadata={"description": "1: sequential decoding; 2-64: batched; auto "
                                         "(default): BATCH_SIZE, else batched on a GPU only"})
    diarize = ma.fields.Boolean(metadata={"description": "label who speaks when (SPEAKER_00, ...); "
                                          "runs beside the transcription"})
    min_speakers = Integer(validate=ma.validate.Range(1, MAX_SPEAKERS), metadata={
        "description": "with diarize: at least this many speakers (a hint)"})
    max_speakers = Integer(validate=ma.validate.Range(1, MAX_SPEAKERS), metadata={
        "description": "with diarize: at most this many speakers (a hint)"})
    known_speaker_names = KNOWN_NAMES()
    known_speaker_references = KNOWN_REFERENCES()
    webhook_url = ma.fields.String(metadata={"description": "http(s) URL told when the job ends"})
    webhook_auth_header_name = ma.fields.String()
    webhook_auth_header_value = ma.fields.String()
    response_format = ma.fields.String(validate=ma.validate.OneOf(list(FORMATS)))


class Accepted(ma.Schema):
    task_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(STATES))
    cached = ma.fields.Boolean(required=True)
    status_url = ma.fields.String(required=True)
    result_url = ma.fields.String(required=True)


# -- following ------------------------------------------------------------------------------
class SegmentOut(ma.Schema):
    id = ma.fields.Integer(required=True)
    start = ma.fields.Float(required=True)
    end = ma.fields.Float(required=True)
    text = ma.fields.String(required=True)
    speaker = ma.fields.String(metadata={"description": "who speaks (diarized jobs only)"})
    channel = ma.fields.Integer(metadata={"description": "the audio channel, from 1 (multichannel jobs only)"})


class RedactionOut(ma.Schema):
    start = ma.fields.Float(required=True)
    end = ma.fields.Float(required=True)
    policy = ma.fields.String(required=True, validate=ma.validate.OneOf(redaction.POLICIES))


class SpeakerOut(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "SPEAKER_00, SPEAKER_01, ..."})
    talk_time = ma.fields.Float(required=True, metadata={"description": "seconds this speaker talks"})


class ResultOut(ma.Schema):
    text = ma.fields.String(required=True)
    language = ma.fields.String(required=True)
    duration = ma.fields.Float(required=True)
    segments = ma.fields.List(ma.fields.Nested(SegmentOut), required=True)
    speakers = ma.fields.List(ma.fields.Nested(SpeakerOut), metadata={
        "description": "diarized jobs only: each speaker and their talk time"})
    warnings = ma.fields.List(ma.fields.String(), metadata={
        "description": "where the engine did the nearest thing to an option it lacks (hotwords "
                       "on openai-whisper)"})
    channels = ma.fields.List(ma.fields.Integer(), metadata={"description": "multichannel jobs: the channels"})
    redactions = ma.fields.List(ma.fields.Nested(RedactionOut), metadata={
        "description": "redact_pii jobs: where redacted words were said"})


class WebhookOut(ma.Schema):
    url = ma.fields.String(required=True)
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(["pending", "delivered", "failed"]))
    attempts = ma.fields.Integer(required=True)
    last_status = ma.fields.Integer(allow_none=True)


class JobSummary(ma.Schema):
    task_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(STATES))
    stage = ma.fields.String(required=True)
    progress = ma.fields.Float(required=True, validate=ma.validate.Range(0, 1))
    cached = ma.fields.Boolean(required=True)
    filename = ma.fields.String(required=True)
    engine = ma.fields.String(required=True)
    model = ma.fields.String(required=True)
    language = ma.fields.String(allow_none=True)
    duration = ma.fields.Float(allow_none=True)
    created_at = ma.fields.String(required=True)
    finished_at = ma.fields.String(allow_none=True)
    error = ma.fields.Nested(ErrorBody, allow_none=True)
    warnings = ma.fields.List(ma.fields.String(), metadata={
        "description": "what the result lacks, such as speakers when diarization failed and "
                       "DIARIZE_FAILURE=ignore"})
    status_url = ma.fields.String(required=True)
    result_url = ma.fields.String(required=True)
    redacted_audio_url = ma.fields.String(metadata={
        "description": "completed jobs with redact_pii_audio: where the redacted audio is"})


class JobStatus(JobSummary):
    language_probability = ma.fields.Float(allow_none=True)
    device = ma.fields.String(allow_none=True)
    device_reason = ma.fields.String(allow_none=True)
    started_at = ma.fields.String(allow_none=True)
    queue_position = ma.fields.Integer(allow_none=True, metadata={"description": "while queued"})
    chunks = ma.fields.Integer(allow_none=True, metadata={
        "description": "a long recording transcribed as this many chunks in parallel"})
    webhook = ma.fields.Nested(WebhookOut, allow_none=True)
    segments = ma.fields.List(ma.fields.Nested(SegmentOut),
                              metadata={"description": "decoded so far, while transcribing"})
    result = ma.fields.Nested(ResultOut, metadata={"description": "when completed"})


class JobList(ma.Schema):
    jobs = ma.fields.List(ma.fields.Nested(JobSummary), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class ListQuery(Strict):
    status = ma.fields.String(validate=ma.validate.OneOf(STATES))
    limit = Integer(load_default=20, validate=ma.validate.Range(1, 100))
    cursor = ma.fields.String(metadata={"description": "next_cursor of the previous page"})
    all = ma.fields.Boolean(load_default=False, metadata={
        "description": "every client's jobs, not only the caller's (admin keys only)"})


class FormatQuery(Strict):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(list(FORMATS)))
    chars_per_caption = Integer(validate=ma.validate.Range(captions.MIN_CHARS, captions.MAX_CHARS), metadata={
        "description": "srt and vtt: re-flow the cues from the words, at most this many characters a line"})
    max_lines = Integer(validate=ma.validate.Range(1, captions.MAX_LINES), metadata={
        "description": "srt and vtt: at most this many lines a cue (with chars_per_caption; default 1)"})


class WordOut(ma.Schema):
    word = ma.fields.String(required=True)
    start = ma.fields.Float(required=True)
    end = ma.fields.Float(required=True)


class PassageOut(ma.Schema):
    text = ma.fields.String(required=True)
    start = ma.fields.Float(required=True)
    end = ma.fields.Float(required=True)
    speaker = ma.fields.String(metadata={"description": "diarized jobs only"})
    channel = ma.fields.Integer(metadata={"description": "multichannel jobs only"})
    words = ma.fields.List(ma.fields.Nested(WordOut), metadata={
        "description": "only where the job asked for word_timestamps"})


class Sentences(ma.Schema):
    sentences = ma.fields.List(ma.fields.Nested(PassageOut), required=True)


class Paragraphs(ma.Schema):
    paragraphs = ma.fields.List(ma.fields.Nested(PassageOut), required=True)


class SearchQuery(Strict):
    words = ma.fields.String(required=True, metadata={
        "description": f"comma-separated words or phrases (at most {search.MAX_TERMS}), matched without "
                       "regard to case or punctuation"})


class MatchOut(ma.Schema):
    text = ma.fields.String(required=True)
    count = ma.fields.Integer(required=True)
    timestamps = ma.fields.List(ma.fields.List(ma.fields.Float()), required=True, metadata={
        "description": "[start, end] in seconds of each occurrence"})


class SearchOut(ma.Schema):
    matches = ma.fields.List(ma.fields.Nested(MatchOut), required=True)


class ResultQuery(FormatQuery):
    download = ma.fields.Boolean(load_default=False, metadata={
        "description": "answer as an attachment named after the recording"})


class Cancelled(ma.Schema):
    task_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)


# -- operators ------------------------------------------------------------------------------
class Health(ma.Schema):
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["ok", "degraded", "unavailable"]))
    redis = ma.fields.String(required=True)
    rabbitmq = ma.fields.String(required=True)
    workers = ma.fields.Integer(required=True)
    queues_served = ma.fields.List(ma.fields.String(), required=True)


class Gpu(ma.Schema):
    index = ma.fields.Integer()
    name = ma.fields.String()
    memory_total = ma.fields.Integer()
    memory_used = ma.fields.Integer()
    memory_fraction = ma.fields.Float()
    utilization = ma.fields.Integer(allow_none=True)
    temperature = ma.fields.Integer(allow_none=True)


class Worker(ma.Schema):
    host = ma.fields.String()
    pid = ma.fields.Integer()
    queues = ma.fields.List(ma.fields.String())
    device = ma.fields.String(allow_none=True)
    device_reason = ma.fields.String(allow_none=True)
    gpus = ma.fields.List(ma.fields.Nested(Gpu))
    models = ma.fields.List(ma.fields.String())
    jobs_done = ma.fields.Integer()
    seen_at = ma.fields.Float()


class GpuStatus(ma.Schema):
    workers = ma.fields.List(ma.fields.Nested(Worker), required=True)
    gpu_count = ma.fields.Integer(required=True)
    cuda_workers = ma.fields.Integer(required=True)


class CacheStats(ma.Schema):
    enabled = ma.fields.Boolean(required=True)
    hits = ma.fields.Integer(required=True)
    misses = ma.fields.Integer(required=True)
    hit_rate = ma.fields.Float(required=True)
    entries = ma.fields.Integer(required=True)
    bytes = ma.fields.Integer(required=True)
    max_entries = ma.fields.Integer(required=True)
    ttl_seconds = ma.fields.Integer(required=True)
    disk = ma.fields.Boolean(required=True)


class Cleared(ma.Schema):
    cleared = ma.fields.Integer(required=True)
