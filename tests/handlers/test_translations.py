"""Every message and every label exists in every language Lightbox speaks, with the same slots.

A translation that drops or renames a template variable, uses a tag Telegram refuses, gives Russian two
plural forms instead of three, or forgets a label would only show up in one patient's chat; these tests
catch it for all of them at once.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, meta, nodes

from handlers import texts

TEMPLATES = texts.TEMPLATES_DIR
TRANSLATED = [lang for lang in texts.LANGUAGES if lang != "en"]
ENGLISH = sorted(p.name for p in TEMPLATES.iterdir() if p.is_file() and p.suffix in {".html", ".txt"})
# Telegram's HTML parse mode: these tags and no others (https://core.telegram.org/bots/api#html-style).
ALLOWED_TAGS = {"b", "i", "u", "s", "code", "pre", "a", "blockquote", "tg-spoiler"}
# The tags the brief allows in templates (tg-spoiler is Telegram's too, but no message needs it).
TEMPLATE_TAGS = {"b", "i", "u", "s", "code", "pre", "a", "blockquote"}
TAG = re.compile(r"</?\s*([a-zA-Z][\w-]*)")
# Words that are English and nothing else: one left in a translation means a sentence was missed.
ENGLISH_ONLY = {
    "the", "your", "you", "please", "sorry", "with", "this", "that", "have", "from", "which", "what", "here",
    "there", "will", "can't", "don't", "i'm", "picture", "pictures", "study", "studies", "share", "link", "links",
    "delete", "image", "images", "scan", "doctor", "done", "send", "tap", "open", "until", "shown", "notes",
}  # fmt: skip
# ...except where the other language has the same word ("Link" is German, "Notes" is not).
NOT_ENGLISH_IN = {"de": {"link", "links"}}


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _variables(source: str) -> set[str]:
    """The template's own variables (the environment's helpers such as ``plural`` are not variables)."""
    env = texts.environment()
    return meta.find_undeclared_variables(env.parse(source)) - set(env.globals)


def _prose(source: str) -> str:
    """What a patient reads of a template: without Jinja blocks, expressions, HTML tags and /commands
    (a command's name is the same in every language)."""
    text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", source, flags=re.S)
    return _without_commands(re.sub(r"<[^>]+>", " ", text))


def _without_commands(text: str) -> str:
    return re.sub(r"/[a-z_]+", " ", text)


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W\d_][^\W\d_']*", text)}


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_english_message_has_a_translation(lang: str) -> None:
    have = sorted(p.name for p in (TEMPLATES / lang).iterdir() if p.is_file())
    assert have == ENGLISH


@pytest.mark.parametrize("lang", TRANSLATED)
@pytest.mark.parametrize("name", [n for n in ENGLISH if n.endswith(".html")])
def test_a_translation_uses_the_same_variables_and_only_telegram_tags(lang: str, name: str) -> None:
    english, translated = _source(TEMPLATES / name), _source(TEMPLATES / lang / name)
    assert _variables(translated) == _variables(english)
    tags = {t.lower() for t in TAG.findall(_prose_tags_only(translated))}
    assert tags <= TEMPLATE_TAGS, f"{lang}/{name} uses tags Telegram refuses: {tags - TEMPLATE_TAGS}"
    assert _balanced(translated), f"{lang}/{name} opens and closes tags differently"


def _prose_tags_only(source: str) -> str:
    return re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", source, flags=re.S)


def _balanced(source: str) -> bool:
    text = _prose_tags_only(source)
    opened = [t.lower() for t in re.findall(r"<\s*([a-zA-Z][\w-]*)[^>]*>", text)]
    closed = [t.lower() for t in re.findall(r"</\s*([a-zA-Z][\w-]*)\s*>", text)]
    return sorted(opened) == sorted(closed)


@pytest.mark.parametrize("lang", TRANSLATED)
@pytest.mark.parametrize("name", ENGLISH)
def test_no_english_sentence_is_left_in_a_translation(lang: str, name: str) -> None:
    leftover = _words(_prose(_source(TEMPLATES / lang / name))) & (ENGLISH_ONLY - NOT_ENGLISH_IN.get(lang, set()))
    assert not leftover, f"{lang}/{name} still has English: {sorted(leftover)}"


def _plural_calls(source: str) -> list[nodes.Call]:
    tree = Environment().parse(source)
    calls = tree.find_all(nodes.Call)
    return [call for call in calls if isinstance(call.node, nodes.Name) and call.node.name == "plural"]


@pytest.mark.parametrize("lang", TRANSLATED)
def test_plural_gives_every_form_the_language_has(lang: str) -> None:
    """Russian counts need three forms (1 снимок, 2 снимка, 5 снимков); German and Spanish two."""
    wanted = 3 if lang == "ru" else 2
    for path in sorted((TEMPLATES / lang).glob("*.html")):
        for call in _plural_calls(_source(path)):
            forms = len(call.args) - 1
            assert forms == wanted, f"{lang}/{path.name}: plural with {forms} forms on line {call.lineno}"


# One set of values per template, so each one renders in each language (undefined names fail: the
# environment is strict). Counts above 4 make Russian use its "many" form.
SAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "activity": {"events": [{"when": "12 Mar 2025, 14:05 UTC", "text": "x"}]},
    "compare_caption": {"what": "MRI", "earlier": "a", "later": "b", "interval": "c", "index": 3, "count": 12},
    "compare_none": {"reason": "r"},
    "describe": {"description": "d"},
    "draw_link": {"what": "w", "url": "http://127.0.0.1:9/s/x", "expires": "e"},
    "error": {"ref": "abcd1234"},
    "explain": {"term": "t", "explanation": "e", "on_your_images": "o", "ask": ["q"], "labels": {
        "images": "i", "ask": "a", "note": "n"}},
    "explain_unknown": {"query": "q", "suggestions": True},
    "forget_confirm": {"studies": 5},
    "forget_done": {"deleted": True, "studies": 5, "files": 21, "links": 2},
    "help": {},
    "language": {"changed": True, "name": "Deutsch", "note": "n"},
    "link_failed": {"reason": "used"},
    "linked": {"study_count": 5},
    "mark_labelled": {},
    "mark_pick": {"refine": True},
    "mark_saved": {},
    "no_current": {},
    "no_study": {"any_studies": True, "wanted": "w", "suggestion": "s"},
    "not_linked": {},
    "note_deleted": {},
    "note_saved": {},
    "notes": {"notes": [{"what": "w", "kind": "note", "text": "t"}, {"what": "w", "kind": "mark", "text": ""}]},
    "privacy": {"protect": False},
    "protection_set": {"protect": False},
    "refuse": {"reason": "diagnosis"},
    "render_failed": {"reason": "r"},
    "revoke_no_match": {"recipient": "Dr. Lee"},
    "share_code": {"code": "123456", "recipient": "Dr. Lee"},
    "share_created": {"recipient": "Dr. Lee", "url": "http://127.0.0.1:9/s/x", "what": "w", "expires": "e",
                      "max_views": 5, "code": "123456"},
    "share_failed": {"reason": "r"},
    "share_locked": {"what": "w", "recipient": "Dr. Lee"},
    "share_opened": {"what": "w", "recipient": "Dr. Lee"},
    "share_revoked": {"count": 5},
    "shares": {"links": [{"what": "w", "recipient": "Dr. Lee", "expires": "e", "views": 5}]},
    "studies": {"studies": [{"when": "w", "what": "x", "description": "d", "images": 5}], "total": 9, "offset": 0},
    "study_caption": {"what": "w", "when": "d", "plane": "p", "index": 6, "count": 12, "series_text": "s",
                      "window_text": "l", "notes": "n"},
    "timeline": {"parts": [{"part": "Knee", "studies": [{"when": "a", "what": "b"}, {"when": "c", "what": "d"}]}]},
    "unknown": {},
    "upload_claim_refused": {},
    "upload_claimed": {"kept": 5, "removed": 2},
    "upload_failed": {"reason": "r"},
    "upload_progress": {"done": 5, "total": 9},
    "upload_summary": {"added": 5, "present": 2, "studies": [{"when": "w", "what": "x", "description": "d"}],
                       "skipped": 5, "skip_reason": "s", "conflicts": 5},
    "upload_which": {"count": 2, "people": [{"label": "Ann D.", "studies": 5}]},
    "welcome": {},
}  # fmt: skip


def test_the_sample_values_cover_every_message() -> None:
    assert sorted(SAMPLE_VALUES) == sorted(n.removesuffix(".html") for n in ENGLISH if n.endswith(".html"))


@pytest.mark.parametrize("lang", texts.LANGUAGES)
@pytest.mark.parametrize("name", sorted(SAMPLE_VALUES))
def test_every_message_renders_in_every_language(lang: str, name: str) -> None:
    with texts.speaking(lang):
        rendered = texts.render(name, **SAMPLE_VALUES[name])
    assert rendered.strip()
    if lang != "en" and _words(_prose(_source(TEMPLATES / f"{name}.html"))):
        assert rendered != _english(name)  # the translation, not the English fallback


def _english(name: str) -> str:
    with texts.speaking("en"):
        return texts.render(name, **SAMPLE_VALUES[name])


def test_a_translated_message_is_the_one_rendered() -> None:
    with texts.speaking("ru"):
        caption = texts.render("study_caption", **SAMPLE_VALUES["study_caption"])
        expired = texts.plain_text("button_expired")
    assert "снимок 6 из 12" in caption
    assert "кнопка" in expired


# ---------------------------------------------------------------- labels.toml


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_label_is_in_every_language() -> None:
    missing = {key: sorted(set(texts.LANGUAGES) - set(entry)) for key, entry in texts.labels().items()}
    assert {key: langs for key, langs in missing.items() if langs} == {}
    extra = {key: sorted(set(entry) - set(texts.LANGUAGES)) for key, entry in texts.labels().items()}
    assert {key: langs for key, langs in extra.items() if langs} == {}


@pytest.mark.parametrize("key", sorted(texts.labels()))
def test_a_label_has_the_same_placeholders_and_shape_in_every_language(key: str) -> None:
    entry = texts.labels()[key]
    english = entry["en"]
    for lang in TRANSLATED:
        value = entry[lang]
        assert type(value) is type(english), f"{key}: {lang} is a {type(value).__name__}"
        if isinstance(english, str):
            assert isinstance(value, str)
            assert _placeholders(value) == _placeholders(english), f"{key}: {lang} has other placeholders"
            if english:
                assert value, f"{key}: {lang} is empty"
        elif key.startswith("unit."):
            assert len(value) == (3 if lang == "ru" else 2), f"{key}: {lang} has {len(value)} forms"
        else:
            assert len(value) == len(english), f"{key}: {lang} has {len(value)} entries"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_no_label_is_left_in_english(lang: str) -> None:
    """Translated labels say nothing in English (abbreviations such as CT, PET or DICOM are fine)."""
    leftovers = {}
    for key, entry in texts.labels().items():
        value = entry[lang]
        text = " ".join(value) if isinstance(value, list) else re.sub(r"{\w+}", " ", value)
        words = _words(_without_commands(text))
        found = words & (ENGLISH_ONLY - NOT_ENGLISH_IN.get(lang, set()))
        if found:
            leftovers[key] = sorted(found)
    assert leftovers == {}


def test_every_label_the_code_asks_for_exists() -> None:
    """Each ``label("...")`` / ``counted(n, "...")`` with a fixed key in handlers/ names a real label."""
    handlers_dir = TEMPLATES.parent
    keys = set(texts.labels())
    asked: set[str] = set()
    for path in sorted(handlers_dir.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        asked |= set(re.findall(r"""\blabel\(\s*"([a-z_.\-A-Z]+)"\s*[,)]""", source))
        asked |= {f"unit.{k}" for k in re.findall(r"""\bcounted\([^,]+,\s*"(\w+)"\)""", source)}
    assert asked, "no label() call found: the pattern above is stale"
    assert sorted(asked - keys) == []
