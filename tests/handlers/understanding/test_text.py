"""The cleaning stages: markup, invisible characters, look-alike letters, folding, tokens."""

from __future__ import annotations

from handlers.understanding.text import (
    MAX_MESSAGE_CHARS,
    clean,
    fix_lookalikes,
    fold,
    remove_invisible,
    strip_markup,
    tokenize,
)


def test_strip_markup_keeps_the_words() -> None:
    assert strip_markup("<b>show</b> my <i>mri</i>").split() == ["show", "my", "mri"]
    assert strip_markup("[my scan](https://example.org/x) &amp; more").split() == ["my", "scan", "&", "more"]
    assert strip_markup("**bold** _it_ ~strike~ `code`").split() == ["bold", "it", "strike", "code"]


def test_remove_invisible_drops_zero_width_and_normalises() -> None:
    assert remove_invisible("m\u200br\u200ci\u2060") == "mri"
    assert remove_invisible("Maria\u2019s x\u2011ray") == "Maria's x-ray"
    assert remove_invisible("ＭＲＩ") == "MRI"


def test_lookalikes_are_fixed_only_where_out_of_place() -> None:
    assert fix_lookalikes("show my \u041cRI") == "show my MRI"  # Cyrillic М in a Latin word
    assert fix_lookalikes("show my \u0421\u0422 scan") == "show my CT scan"  # all look-alikes, English message
    assert fix_lookalikes("покажи мою КТ") == "покажи мою КТ"  # real Russian stays
    assert fix_lookalikes("пoкажи") == "покажи"  # Latin o inside a Russian word


def test_fold_and_tokens() -> None:
    assert fold("Última Röntgen ёлка") == "ultima rontgen елка"
    tokens = tokenize("Show Maria's MRI, what's that")
    assert [t.norm for t in tokens] == ["show", "maria", "mri", "what", "is", "that"]
    assert tokens[1].possessive and not tokens[3].possessive
    assert tokens[1].text == "Maria"


def test_clean_bounds_the_length() -> None:
    assert len(clean("a " * 100_000)) <= MAX_MESSAGE_CHARS
