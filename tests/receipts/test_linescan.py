"""The compiled common case of ``scan_text`` (``receipts/_linescan.c``) against the Python
it stands in for: the same hits, counts, bad lines, offsets and line counts for any text,
and the plain lines really read by it (or the speed it exists for is gone unnoticed).

The oracle is ``scan_text`` with ``accesslog._fast_scan`` set to None, which
tests/receipts/test_scan.py holds to the exact field-by-field parser.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharebatch.receipts import accesslog
from sharebatch.receipts.accesslog import _ADDRESS, _time, _times, scan_text
from tests.support.accesslog import log_line

try:
    from sharebatch.receipts import _linescan
except ImportError:  # pragma: no cover - built without a C compiler
    _linescan = None  # type: ignore[assignment]

if _linescan is None:  # pragma: no cover - depends on the build
    if os.environ.get("SHAREBATCH_REQUIRE_LINESCAN"):
        pytest.fail("sharebatch.receipts._linescan was not built", pytrace=False)
    pytest.skip(
        "sharebatch.receipts._linescan was not built (no C compiler)", allow_module_level=True
    )

ID = "3f9a0c7d1e2b4a58"
SIGNED = (
    "GET /q3-share/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261202%2Feu-west-1%2Fs3%2Faws4_request"
    f"&x-sharebatch-id={ID}&X-Amz-Signature=ab12 HTTP/1.1"
)
URIS = [
    None,
    "-",
    "",
    SIGNED,
    f"GET /q3-share/a b.pdf?x-sharebatch-id={ID} HTTP/1.1",
    f"GET /b/k?x%2Dsharebatch%2did={ID}&X-Amz-Signature=1 HTTP/1.1",
    "GET /b/k?x-sharebatch-id=%33f9a0c7d1e2b4a58 HTTP/1.1",
    "GET /b/k?x-sharebatch-id= HTTP/1.1",
    f"GET /b/x-sharebatch-id={ID} HTTP/1.1",
    "GET /b/k?X-Amz-Credential=A%2F1 HTTP/1.1",
    "GET /b/a%20b.pdf HTTP/1.1",
    "HEAD /q3-share/assets/img-1.png HTTP/1.1",
    f"GET /b/a&x-sharebatch-id=0?x-sharebatch-id={ID} HTTP/1.1",
    f"GET /b/k?a=1&x-sharebatch-id={ID}&x-sharebatch-id=ffffffffffffffff HTTP/1.1",
    f"GET /b/k?a=1 b&x-sharebatch-id={ID}%20x HTTP/1.1",
    f"GET /b/k?a=1 HTTP/1.1&x-sharebatch-id={ID}",
    "GET /b/k?x-sharebatch-idx=1&x-sharebatch-id HTTP/1.1",
    "GET /b/k?a%3D=1&b=%41 HTTP/1.1",
]
ADDRESSES = st.one_of(
    st.sampled_from(["192.0.2.3", "2001:db8::1", "::ffff:192.0.2.1", "-", "01.2.3.4", "::"]),
    st.ip_addresses().map(str),
    st.text("0123456789abcdefABCDEF:.", min_size=1, max_size=24),
)
# What an outsider can put where a field was: the characters the grammar turns on, digits,
# a character past ASCII, and NUL.
HOSTILE = st.sampled_from([" ", '"', "-", "[", "]", "\r", ":", ".", "%", "&", "?", "=", "x", "0"])
PIECES = st.one_of(HOSTILE, st.sampled_from(["é", "\x00", "\u00ff", " 200 - 1 2 3 4 "]))
TIMES = st.sampled_from(
    [
        "02/Dec/2026:13:45:06 +0000",
        "02/Dec/2026:13:45:07 +0000",
        "31/Feb/2026:00:00:00 +0000",
        "02/Dec/2026:13:45:06 -0130",
        "02/Dec/2026:13:45:60 +0000",
        "01/Jan/0001:00:00:00 +0100",
        "2/Dec/2026:13:45:06 +0000",
        "02/Dec/2026:13:45:06 +2400",
    ]
)


@st.composite
def plain_lines(draw: st.DrawFn) -> str:
    """A line as S3 writes one, its fields drawn from what varies."""
    text = log_line(
        bucket=draw(st.sampled_from(["q3-share", "other-bucket"])),
        time=datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC),
        request_uri=draw(st.sampled_from(URIS)),
        key=draw(st.sampled_from(["reports/q3.pdf", None, "a%20b.pdf", "-x"])),
        operation=draw(st.sampled_from(["REST.GET.OBJECT", "REST.HEAD.OBJECT", "BATCH.X"])),
        status=draw(st.sampled_from([200, 206, 403, None, 0, 10**19, 10**20 - 1])),
        error_code=draw(st.sampled_from([None, "AccessDenied"])),
        bytes_sent=draw(st.sampled_from([0, 4096, None, 123456789012345678, 10**19 + 7])),
        object_size=draw(st.sampled_from([4096, None, 99999999999999999999])),
        remote_ip=draw(ADDRESSES),
        requester=draw(st.sampled_from([None, "arn:aws:iam::123456789012:user/x"])),
        user_agent=draw(st.sampled_from([None, "-", "curl/8.5.0", "a b", "", "é/1"])),
        referer=draw(st.sampled_from([None, "-", "https://example.com/", ""])),
        trailing=draw(st.booleans()),
    )
    text = text.replace("02/Dec/2026:13:45:06 +0000", draw(TIMES))
    if draw(st.booleans()):
        text = text.replace('"-" ', "- ", draw(st.integers(0, 2)))
    return text + draw(st.sampled_from(["", "", "\r", " x", ' "']))


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A plain line with a few characters inserted, replaced or removed anywhere."""
    text = draw(plain_lines())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        piece = draw(PIECES)
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "replace":
            text = text[:at] + piece + text[at + 1 :]
        else:
            text = text[:at] + text[at + 1 :]
    return text


def _read(text: str, most: int, *, compiled: bool) -> list[object]:
    """Every answer ``scan_text`` gives over ``text``, ``most`` lines a call, as
    ``sources`` calls it: with or without the compiled scan."""
    saved = accesslog._fast_scan
    accesslog._fast_scan = saved if compiled else None
    try:
        answers: list[object] = []
        at, first = 0, 1
        while at <= len(text):
            rows, at, count = scan_text("f", first, text, at, most)
            answers.append((rows, at, count))
            first += count
        return answers
    finally:
        accesslog._fast_scan = saved


# tools/asan_linescan.py runs this under AddressSanitizer with many more examples.
FUZZ_EXAMPLES = int(os.environ.get("SHAREBATCH_FUZZ_EXAMPLES", "1500"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(plain_lines(), mutated_lines(), st.just("")), min_size=1, max_size=8),
    st.integers(1, 9),
)
def test_the_compiled_scan_reads_any_text_as_the_python_does(texts: list[str], most: int) -> None:
    """Plain lines and lines with characters inserted, replaced or removed anywhere (quotes,
    spaces, brackets, digits, a NUL, characters past ASCII): the same hits (every field,
    ints past 64 bits included), counts, bad lines with their numbers, offsets and line
    counts as the Python alone, however many lines a call takes."""
    text = "\n".join(texts)
    assert _read(text, most, compiled=True) == _read(text, most, compiled=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(plain_lines(), min_size=1, max_size=6))
def test_a_text_past_latin_1_is_read_by_the_python_with_the_same_answer(texts: list[str]) -> None:
    """A chunk holding a character past U+00FF is not the compiled scan's (it says so with
    None and reads nothing); ``scan_text`` then reads it all, with the Python's answer."""
    text = "\n".join([*texts, "\u20ac"])
    assert _linescan.scan(text, 0, 100, [], {}, _time) is None
    assert _read(text, 3, compiled=True) == _read(text, 3, compiled=False)


def _plain(
    remote_ip: str = "192.0.2.3", uri: str | None = SIGNED, agent: str = "curl/8.5.0"
) -> str:
    return log_line(
        bucket="q3-share",
        time=datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC),
        request_uri=uri,
        key="reports/q3.pdf",
        bytes_sent=48213,
        object_size=48213,
        remote_ip=remote_ip,
        user_agent=agent,
    )


def test_plain_lines_are_read_by_the_compiled_scan_itself() -> None:
    """The lines S3 writes for our links and for others' requests, IPv4 and IPv6, with and
    without the trailing fields, are read in the compiled scan, every one, in one call:
    were it to leave them to the Python, ``usage`` would be right and as slow as before."""
    lines = [
        _plain(),
        _plain("2001:db8:85a3::8a2e:370:7334"),
        _plain(uri="HEAD /q3-share/assets/img-1.png HTTP/1.1"),
        _plain(uri=None, agent="-"),
        _plain("::ffff:192.0.2.1").removesuffix(" us-east-1"),
        _plain(uri="GET /b/a%20b.pdf HTTP/1.1"),
    ]
    text = "\n".join(lines) + "\n"
    hits: list[object] = []
    other, at, read = _linescan.scan(text, 0, 100, hits, {}, _time) or (0, 0, 0)
    assert read == len(lines)
    assert at == len(text)  # stopped at the empty line after the last newline
    assert other == 3
    moment = datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC)
    fields = (ID, "q3-share", "reports/q3.pdf", moment, "192.0.2.3", "REST.GET.OBJECT")
    assert hits[0] == (*fields, 200, 48213, 48213, "curl/8.5.0")
    addresses = [hit[4] for hit in hits]  # type: ignore[index]
    assert addresses == ["192.0.2.3", "2001:db8:85a3::8a2e:370:7334", "::ffff:192.0.2.1"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (_plain().replace("13:45:06", "13:45:60"), "a time that does not convert"),
        (_plain("2001:db8::1::2"), "an address that is none"),
        (_plain(uri=SIGNED.replace(ID, "%33" + ID[1:])), "an id to percent-decode"),
        (_plain(agent='Dalvik (Alba 10" Build)'), "a raw quote in the user agent"),
        (_plain() + ' "', "a quote after the user agent"),
        ("", "an empty line"),
    ],
)
def test_the_compiled_scan_stops_before_a_line_it_leaves_to_the_python(line: str, why: str) -> None:
    """A line only the Python reads right (or as a bad line) is left to it: the compiled
    scan stops at its start, after the plain lines before it, having read nothing of it."""
    text = _plain() + "\n" + line + "\n" + _plain()
    hits: list[object] = []
    answer = _linescan.scan(text, 0, 100, hits, {}, _time)
    assert answer == (0, len(_plain()) + 1, 1), why
    assert len(hits) == 1


def test_the_compiled_scan_takes_times_from_the_cache_and_converts_new_ones() -> None:
    """A time field already converted is taken from ``accesslog``'s cache (the same object);
    a new one is converted by ``_time`` and so cached for the Python as well."""
    moment = datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC)
    cached = {"02/Dec/2026:13:45:06 +0000": moment}
    hits: list[tuple[object, ...]] = []
    _linescan.scan(_plain(), 0, 1, hits, cached, _time)
    assert hits[0][3] is moment
    later = _plain().replace("13:45:06 +0000", "14:45:06 +0100")
    _times.pop("02/Dec/2026:14:45:06 +0100", None)
    _linescan.scan(later, 0, 1, hits, {}, _time)
    assert hits[1][3] == moment
    assert _times["02/Dec/2026:14:45:06 +0100"] == moment


def test_the_compiled_scan_passes_on_what_converting_raises_but_a_bad_time() -> None:
    """Only ``ValueError`` (a time that does not convert) leaves the line to the Python;
    anything else the conversion raises is not swallowed."""

    def broken(stamp: str) -> datetime:
        raise RuntimeError(stamp)

    with pytest.raises(RuntimeError, match="13:45:06"):
        _linescan.scan(_plain(), 0, 1, [], {}, broken)
    assert _linescan.scan(_plain(), 0, 1, [], {}, lambda _: _time("31/Feb/2026:0")) == (0, 0, 0)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=6).map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
        st.ip_addresses(v=4).map(str),
        st.text("0123456789abcdefABCDEF:.", min_size=1, max_size=45),
        st.lists(
            st.sampled_from(["::", ":", "0", "ffff", "12345", "1.2.3.4", "."]),
            min_size=1,
            max_size=10,
        ).map("".join),
    )
)
def test_an_address_is_read_in_the_compiled_scan_exactly_when_it_is_one(text: str) -> None:
    """The compiled scan's address check is the pattern's (IPv4 without leading zeros, IPv6
    as RFC 3986 spells it): a line is read there exactly when its address is an address,
    so neither a bad address passes nor a good one costs the Python's time."""
    line = _plain(text)
    read = _linescan.scan(line, 0, 1, [], {}, _time)
    assert (read == (0, len(line) + 1, 1)) == (_ADDRESS.fullmatch(text) is not None)


def test_counted_fields_past_64_bits_are_read_whole() -> None:
    """Status, bytes and size fields of 19 and 20 digits (S3's counters are 64-bit; the
    pattern allows 20 digits) become the same ints as the Python's ``int``."""
    big = 99999999999999999999
    line = log_line(
        bucket="q3-share",
        time=datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC) + timedelta(seconds=1),
        request_uri=SIGNED,
        key="reports/q3.pdf",
        status=big,
        bytes_sent=1234567890123456789,
        object_size=big,
    )
    hits: list[tuple[object, ...]] = []
    assert _linescan.scan(line, 0, 1, hits, {}, _time) == (0, len(line) + 1, 1)
    assert hits[0][6:9] == (big, 1234567890123456789, big)


def test_the_compiled_scan_is_what_scan_text_uses() -> None:
    """``scan_text`` goes through the compiled scan when it was built (this module runs only
    then): the speed claimed in docs/performance.md is this path's."""
    assert accesslog._fast_scan is _linescan.scan
