"""Text that encoders treat specially, for tests comparing a fast path with the general one.

Quotes, backslashes, commas, formula starts, C0/C1 controls, DEL, bidi and format characters,
separators, non-BMP characters, lone surrogates, secret markers and HTML specials, mixed with
arbitrary text: most drawn values need care somewhere, some need none (the fast path's case).
"""

from __future__ import annotations

from hypothesis import strategies as st

PIECES = [
    '"', "\\", ",", "=", "+", "-", "@", "'", "&", "<", ">", " ", "/", "%", ";",
    "\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\xa0", "\xad",
    "\u061c", "\u200b", "\u202e", "\u2066", "\u2028", "\u2029", "\ufeff",
    "é", "日本", "\U0001f600", "\U000e0041", "\ud800",
    "Signature=", "X-Amz-Security-Token=", "x-amz-signature", "file-0001.csv",
]  # fmt: skip


def texts(*, surrogates: bool = True, min_size: int = 0) -> st.SearchStrategy[str]:
    """Strings built from ``PIECES`` and arbitrary characters (lone surrogates optional: a
    file written as UTF-8 cannot hold them)."""
    pieces = PIECES if surrogates else [p for p in PIECES if p != "\ud800"]
    chars = st.characters(codec=None) if surrogates else st.characters(codec="utf-8")
    piece = st.one_of(st.sampled_from(pieces), st.text(alphabet=chars, max_size=4))
    return (
        st.lists(piece, min_size=min_size, max_size=6)
        .map("".join)
        .filter(lambda text: len(text) >= min_size)
    )


def plain() -> st.SearchStrategy[str]:
    """Keys as most listings hold them: nothing in them needs escaping anywhere."""
    return st.from_regex(r"[a-z0-9][a-z0-9/._ ()-]{0,30}", fullmatch=True)
