"""The one escaping rule for text from outsiders shown to people or written to plain files."""

from __future__ import annotations

import sys
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from sharebatch.visible import HIDDEN, escaped, unescaped, visible, without_hidden

_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def test_the_class_is_every_control_format_separator_and_surrogate() -> None:
    """HIDDEN matches exactly the code points of those categories in this Python's Unicode."""
    expected = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in _CATEGORIES}
    found = {c for c in range(sys.maxunicode + 1) if HIDDEN.fullmatch(chr(c))}
    assert found == expected


def test_terminal_sequences_and_bidi_overrides_are_written_as_escapes() -> None:
    """An OSC title, a clear-screen, a C1 CSI, RLO, NUL, U+2028 and a tag all show as escapes."""
    key = "a\x1b]0;x\x07\x1b[2J\x9b\u202egnp.exe.pdf\x00\u2028\U000e0041\\z"
    assert visible(key) == (
        "a\\x1b]0;x\\x07\\x1b[2J\\x9b\\u202egnp.exe.pdf\\x00\\u2028\\U000e0041\\z"
    )


def test_plain_text_is_returned_unchanged() -> None:
    """Letters of any script, spaces and a backslash are not touched by ``visible``."""
    text = "Bericht Q3 \u00fc\u4e2d\u0627 C:\\tmp\\x.pdf"
    assert visible(text) is text


def test_a_real_tab_and_the_text_backslash_x09_stay_apart_when_escaped() -> None:
    """``escaped`` doubles the backslash, so a tab and the four characters never look alike."""
    assert escaped("x\ty.pdf") == "x\\x09y.pdf"
    assert escaped("x\\x09y.pdf") == "x\\\\x09y.pdf"


@given(st.text(alphabet=st.characters(codec=None)))
def test_escaped_is_reversible_and_shows_nothing_hidden(text: str) -> None:
    """For any text: ``unescaped(escaped(t)) == t``, and the escaped form hides nothing."""
    out = escaped(text)
    assert unescaped(out) == text
    assert HIDDEN.search(out) is None
    assert HIDDEN.search(visible(text)) is None


@given(st.text())
def test_without_hidden_keeps_every_other_character(text: str) -> None:
    """``without_hidden`` drops exactly the hidden characters, in order."""
    assert without_hidden(text) == "".join(ch for ch in text if not HIDDEN.fullmatch(ch))
