"""Text from outsiders made safe to show: one escaping rule for every terminal and plain file.

Object keys, file names and bundle contents are chosen by whoever uploads or edits them. Shown
raw, a control character rewrites a terminal (``ESC ]0;title BEL``, ``ESC [2J``), a bidi
override reorders what a reader sees (``evil/\\u202egnp.exe.pdf`` displays as
``evil/fdp.exe.png``), and a NUL, a zero-width space or U+2028 vanishes or breaks a line. Every
such character is written as a Python-style escape instead, so a person sees that it is there:

* C0 controls, DEL and C1 controls (Unicode ``Cc``): ``\\x1b``, ``\\x7f``, ``\\x9b``;
* format characters (``Cf``: bidi embeddings, overrides and isolates, zero-width characters,
  the soft hyphen, the BOM, tag characters): ``\\u202e``, ``\\U000e0041``;
* the line and paragraph separators U+2028 and U+2029 (``Zl``, ``Zp``);
* lone surrogates (``Cs``), which only a broken decoder produces.

``visible`` is for people (terminals, log lines, plain-text renderings); a backslash stays as
it is there, since keys from Windows hosts hold them and doubling each would mislead. Where the
text must be read back exactly (``links.csv``), ``escaped`` doubles the backslash too, and
``unescaped`` inverts it. ``without_hidden`` drops the same characters, for names a browser
saves a file under.
"""

from __future__ import annotations

import re

__all__ = ["HIDDEN", "escaped", "unescaped", "visible", "without_hidden"]

# Every character of the categories above in Python 3.11's Unicode 14 database (a test checks
# the class against unicodedata over all code points; computing it here would cost ~0.3 s at
# every start).
_HIDDEN_CLASS = (
    "\x00-\x1f\x7f-\x9f\xad"
    "\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
HIDDEN = re.compile(f"[{_HIDDEN_CLASS}]")
_HIDDEN_OR_BACKSLASH = re.compile(f"[{_HIDDEN_CLASS}\\\\]")
_ESCAPE = re.compile(r"\\(?:\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every control, format, separator and surrogate character escaped."""
    # Nearly every text has none: one search spares the substitution.
    return HIDDEN.sub(_escape, text) if HIDDEN.search(text) else text


def escaped(text: str) -> str:
    """Like ``visible``, and a backslash becomes ``\\\\``: ``unescaped`` gives ``text`` back."""
    if _HIDDEN_OR_BACKSLASH.search(text) is None:
        return text
    return _HIDDEN_OR_BACKSLASH.sub(_escape, text)


def _unescape(match: re.Match[str]) -> str:
    seq = match.group()
    return "\\" if seq == "\\\\" else chr(int(seq[2:], 16))


def unescaped(text: str) -> str:
    """The inverse of ``escaped``."""
    return _ESCAPE.sub(_unescape, text) if "\\" in text else text


def without_hidden(text: str) -> str:
    """``text`` with every character ``visible`` would escape removed."""
    return HIDDEN.sub("", text)
