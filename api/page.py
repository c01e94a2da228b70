"""The page at ``/``: upload a recording, follow the job live, read and download the transcript.

Plain HTML, CSS and JavaScript from ``api/templates`` and ``api/static``: no framework, no
build step, nothing fetched from another origin (the Content-Security-Policy says so too).
The page talks to the public API only, exactly as any other client does.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from api.state import state
from pipeline.engine_registry import ENGINE_NAMES
from pipeline.options import LANGUAGES
from pipeline.redaction import DEFAULT_POLICIES, POLICIES

POLICY_LABELS = {
    "email_address": "E-mail addresses", "credit_card_number": "Card numbers", "iban": "IBANs",
    "us_social_security_number": "US social security numbers", "phone_number": "Phone numbers",
    "ip_address": "IP addresses", "number": "Any number",
}

bp = Blueprint(
    "page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# Everything the page loads comes from this origin; blob: is for downloads made with fetch.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'",
))

# The names a person looks for; the codes are what the API takes (Whisper's own list).
LANGUAGE_NAMES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "ba": "Bashkir", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan",
    "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fo": "Faroese", "fr": "French", "gl": "Galician",
    "gu": "Gujarati", "ha": "Hausa", "haw": "Hawaiian", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jw": "Javanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "la": "Latin",
    "lb": "Luxembourgish", "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian",
    "mg": "Malagasy", "mi": "Maori", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "oc": "Occitan", "pa": "Punjabi", "pl": "Polish",
    "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit",
    "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sn": "Shona", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog",
    "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "yi": "Yiddish", "yo": "Yoruba", "yue": "Cantonese", "zh": "Chinese",
}


def language_choices() -> list[tuple[str, str]]:
    """(code, name) for every language the API accepts, by name."""
    return sorted(((code, LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES), key=lambda c: c[1])


def _hours(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}\u00a0h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}\u00a0h"
    return f"{max(1, seconds // 60)}\u00a0min"


def _size(mb: int) -> str:
    return f"{mb // 1024}\u00a0GB" if mb >= 1024 and mb % 1024 == 0 else f"{mb}\u00a0MB"


def _links() -> list[tuple[str, str]]:
    """Footer links to the service's other human-readable pages, where this app has them."""
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    wanted = (("/api/docs", "API documentation"), ("/api/health", "Service health"))
    return [(path, label) for path, label in wanted if path in rules]


@bp.get("/")
def index() -> Response:
    settings = state().settings
    html = render_template(
        "index.html",
        engines=ENGINE_NAMES,
        default_engine=settings.default_engine,
        default_model=settings.default_model,
        languages=language_choices(),
        redaction_policies=[(p, POLICY_LABELS[p], p in DEFAULT_POLICIES) for p in POLICIES],
        max_upload_mb=settings.max_upload_mb,
        max_upload=_size(settings.max_upload_mb),
        max_duration=_hours(settings.max_duration_seconds),
        links=_links(),
    )
    response = Response(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
