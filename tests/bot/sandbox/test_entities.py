"""Telegram HTML parsing and command entities, in UTF-16 units as Telegram counts them."""

from __future__ import annotations

import pytest

from bot.sandbox.entities import ParseError, command_entities, parse_html, parse_text, utf16_len


def test_utf16_lengths_count_emoji_as_two() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("🩻") == 2
    assert utf16_len("é") == 1


def test_offsets_after_an_emoji_are_utf16() -> None:
    parsed = parse_html("🩻 <b>knee</b> &amp; <i>hip</i>")
    assert parsed.text == "🩻 knee & hip"
    assert parsed.entities == [{"type": "bold", "offset": 3, "length": 4},
                               {"type": "italic", "offset": 10, "length": 3}]


def test_nested_entities_outer_first() -> None:
    parsed = parse_html("<b><i>both</i></b>")
    assert [e["type"] for e in parsed.entities] == ["bold", "italic"]


def test_escaped_html_round_trips_patient_text() -> None:
    import html

    hostile = '<script>alert("x")</script> & <b>'
    parsed = parse_html(f"<b>Note:</b> {html.escape(hostile)}")
    assert parsed.text == f"Note: {hostile}"


@pytest.mark.parametrize("bad", ["<b>open", "</b>", "<u><b>x</u></b>", "<unknown>x</unknown>", "a <3 b",
                                 "<tg-emoji>x</tg-emoji>"])
def test_refused_html(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_html(bad)


def test_parse_modes() -> None:
    assert parse_text("<b>x</b>", None).text == "<b>x</b>"
    assert parse_text("<b>x</b>", "html").text == "x"
    assert parse_text("*x*", "MarkdownV2").text == "*x*"
    with pytest.raises(ValueError, match="unsupported parse_mode"):
        parse_text("x", "BBCode")


def test_command_entities() -> None:
    assert command_entities("/start abc") == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert command_entities("/last@lightbox_sandbox_bot") == [{"type": "bot_command", "offset": 0, "length": 26}]
    assert command_entities("see a/b and /help") == [{"type": "bot_command", "offset": 12, "length": 5}]
    assert command_entities("no commands here") == []
