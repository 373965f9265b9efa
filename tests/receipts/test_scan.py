"""``scan_lines`` and ``scan_rows``, the reading ``usage`` does, against the exact
field-by-field parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.receipts.accesslog import (
    _ID_AT,
    _IPV4_TEXT,
    _NAME_IS,
    _OCTET,
    _SCAN,
    AccessRecord,
    BadLine,
    Scan,
    ScanRows,
    _parse_slowly,
    hit_of,
    link_id_of,
    parse_lines,
    scan_lines,
    scan_of,
    scan_rows,
    scan_rows_of,
    scan_text,
)
from tests.support.accesslog import QUOTE_FLOODS, log_line

ID = "3f9a0c7d1e2b4a58"
SIGNED = (
    "GET /q3-share/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261202%2Feu-west-1%2Fs3%2Faws4_request"
    f"&x-sharebatch-id={ID}&X-Amz-Signature=ab12 HTTP/1.1"
)
REQUEST_URIS = st.sampled_from(
    [
        None,
        "-",
        SIGNED,
        f"GET /q3-share/a b.pdf?x-sharebatch-id={ID} HTTP/1.1",  # a space in the target
        f'GET /q3-share/a\\"b.pdf?x-sharebatch-id={ID} HTTP/1.1',  # an escaped quote
        f'GET /q3-share/a"b.pdf?x-sharebatch-id={ID} HTTP/1.1',  # a raw quote
        f'GET /q3-share/k?x-sharebatch-id={ID}" 200 - 1 2 3 4 "x HTTP/1.1',  # a forged status
        f"GET /b/k?x%2Dsharebatch%2did={ID}&X-Amz-Signature=1 HTTP/1.1",  # the name encoded
        "GET /b/k?x-sharebatch-id=%33f9a0c7d1e2b4a58 HTTP/1.1",  # the value encoded
        "GET /b/k?x-sharebatch-id= HTTP/1.1",  # an empty id
        f"GET /b/x-sharebatch-id={ID} HTTP/1.1",  # in the path: no id
        "GET /b/k?X-Amz-Credential=A%2F1 HTTP/1.1",  # a percent, no id
        "HEAD /q3-share/assets/img-1.png HTTP/1.1",
        "PUT /q3-share/in/x.csv HTTP/1.1",
        "GET /b/k?x-sharebatch-id=" + "a" * 300 + " HTTP/1.1",
        f"GET /b/a&x-sharebatch-id=0?x-sharebatch-id={ID} HTTP/1.1",  # the path's is no id
        f"GET /b/k?a=1&x-sharebatch-id={ID}&x-sharebatch-id=ffffffffffffffff HTTP/1.1",
        f"GET /b/k?my-x-sharebatch-id=1&x-sharebatch-id={ID}",  # no HTTP version
        f"GET /b/k?a=1 b&x-sharebatch-id={ID}%20x HTTP/1.1",  # after a space in the query
        "GET /b/k?x-sharebatch-idx=1 HTTP/1.1",
    ]
)
ADDRESSES = st.one_of(
    st.sampled_from(
        [
            "192.0.2.3",
            "2001:db8::1",
            "2001:db8:0:0:0:0:0:1",
            "::ffff:192.0.2.1",
            "::",
            "-",
            "1.2.3.256",
            "2001:db8::1::2",
            "12345::1",
            "::g",
            "beef",
            "1.2.3",
        ]
    ),
    st.ip_addresses().map(str),
    st.text("0123456789abcdef:.", min_size=1, max_size=20),
)
FREE_TEXT = st.sampled_from(
    [None, "-", "curl/8.5.0", 'Dalvik/2.1.0 (Alba 10" Build/LMY47I)', 'u" 1 - 2 3 4 5 "v', "a b"]
)


@st.composite
def lines(draw: st.DrawFn) -> str:
    """One access log line from the fields that vary in real logs, well-formed or not."""
    time = draw(st.sampled_from([datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC), None]))
    text = log_line(
        bucket=draw(st.sampled_from(["q3-share", "other-bucket"])),
        time=time or datetime(2026, 12, 2, tzinfo=UTC),
        request_uri=draw(REQUEST_URIS),
        key=draw(st.sampled_from(["reports/q3.pdf", None, "a%20b.pdf"])),
        operation=draw(
            st.sampled_from(
                ["REST.GET.OBJECT", "REST.HEAD.OBJECT", "REST.PUT.OBJECT", "S3.EXPIRE.OBJECT"]
            )
        ),
        status=draw(st.sampled_from([200, 206, 403, None])),
        error_code=draw(st.sampled_from([None, "AccessDenied", 'x"'])),
        bytes_sent=draw(st.sampled_from([0, 4096, None])),
        object_size=draw(st.sampled_from([4096, None])),
        remote_ip=draw(ADDRESSES),
        requester=draw(st.sampled_from([None, "arn:aws:iam::123456789012:user/x"])),
        user_agent=draw(FREE_TEXT),
        referer=draw(FREE_TEXT),
        trailing=draw(st.booleans()),
    )
    if time is None:
        text = text.replace("02/Dec/2026:00:00:00", "31/Feb/2026:00:00:00")
    if draw(st.booleans()):
        text = text.replace('"-" ', "- ", draw(st.integers(0, 2)))  # an empty field bare
    return text + draw(st.sampled_from(["", "\r", ' "', " x y"]))


def _exact(file: str, number: int, text: str) -> AccessRecord | BadLine:
    try:
        return _parse_slowly(text.rstrip("\r"))
    except ValueError as exc:
        return BadLine(file, number, str(exc))


@settings(max_examples=600, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=6))
def test_scan_lines_reads_every_line_as_the_exact_parser_does(texts: list[str]) -> None:
    """Quoted Request-URIs with spaces and quotes, escaped or raw, ``-`` fields, IPv6 and
    near-miss addresses, records with and without the trailing fields, other operations,
    hostile quotes: the fast pattern ``scan_lines`` and ``parse_lines`` use gives, line by
    line, what the field-by-field parser gives (the same record or the same bad line), and
    ``scan_lines`` hands ``usage`` the records with an id as their ``Hit``s and counts the
    others."""
    exact = [_exact("f", number, text) for number, text in enumerate(texts, 7)]
    assert parse_lines("f", 7, texts) == exact
    scan = scan_lines("f", 7, texts)
    assert scan == scan_of(exact)
    assert scan.lines == len(texts)
    ids = [item.link_id for item in exact if isinstance(item, AccessRecord)]
    assert [hit.link_id for hit in scan.hits] == [i for i in ids if i is not None]


def test_a_line_without_the_name_is_checked_not_skipped() -> None:
    """A line that cannot carry an id is still a bad line when it does not parse, with its
    file and line: only counted as ``other`` when it is a record."""
    good = log_line(bucket="b", time=datetime(2026, 12, 2, tzinfo=UTC), request_uri=None, key=None)
    texts = [
        good,
        good.replace("02/Dec/2026", "31/Feb/2026"),
        good.replace("192.0.2.3", "2001:db8::1::2"),
        good.replace(" 200 - ", " 2x0 - "),
        good + ' "',
        "",
        "not a record",
    ]
    scan = scan_lines("logs/a", 1, texts)
    assert (scan.hits, scan.other) == ([], 2)  # the last quote ends a user agent of quotes
    assert [(b.line, b.problem.split(":")[0]) for b in scan.bad] == [
        (2, "time is not [dd/Mon/yyyy"),
        (3, "remote_ip is not an IP address"),
        (4, "http_status is not a number"),
        (7, "not an S3 server access log record"),
    ]


def test_a_hit_holds_what_the_join_reads() -> None:
    """A record with an id becomes a hit with its fields converted as the record's are."""
    text = log_line(
        bucket="q3-share",
        time=datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC),
        request_uri=SIGNED,
        key="reports/q3.pdf",
        status=206,
        bytes_sent=None,
        object_size=4096,
        remote_ip="2001:db8::7",
    )
    scan = scan_lines("f", 1, [text])
    (record,) = parse_lines("f", 1, [text])
    assert isinstance(record, AccessRecord)
    assert scan == Scan([hit_of(record)], 0, [])
    (hit,) = scan.hits
    assert (hit.link_id, hit.status, hit.bytes_sent, hit.object_size, hit.remote_ip) == (
        ID,
        206,
        0,
        4096,
        "2001:db8::7",
    )


def test_quote_floods_scan_as_they_parse() -> None:
    """The hostile tails of ``QUOTE_FLOODS`` scan to what the exact parser says of them."""
    base = log_line(
        bucket="q3-share",
        time=datetime(2026, 12, 2, tzinfo=UTC),
        request_uri=SIGNED,
        key="reports/q3.pdf",
    )
    texts = [base + " " + flood[:2000] for flood in QUOTE_FLOODS]
    assert scan_lines("f", 1, texts) == scan_of([_exact("f", n, t) for n, t in enumerate(texts, 1)])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["02/Dec/2026:13:45:", "31/Dec/9999:23:59:", "01/Jan/0001:00:00:"]),
            st.sampled_from([f"{n:02d}" for n in range(62)] + ["5x", "-1", "\u0663\u0663"]),
            st.sampled_from(["+0000", "-0130", "+0545", "+0100"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_times_of_one_minute_convert_as_each_alone(stamps: list[tuple[str, str, str]]) -> None:
    """A time read after another of its minute (taken from that minute's time plus its
    seconds) is the time ``strptime`` gives it alone, and a second that is none, or a time
    out of range once in UTC, is still refused."""
    for minute, second, offset in stamps:
        stamp = f"{minute}{second} {offset}"
        text = log_line(
            bucket="b", time=datetime(2026, 12, 2, tzinfo=UTC), request_uri=None, key=None
        ).replace("02/Dec/2026:00:00:00 +0000", stamp)
        try:
            expected: object = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        except (ValueError, OverflowError):
            expected = None
        (item,) = parse_lines("f", 1, [text])
        got = item.time if isinstance(item, AccessRecord) else None
        assert got == expected, stamp


# Pieces a query is made of around the id's name: separators, the name written plainly, with
# a prefix, percent-encoded or cut short, values plain and encoded, spaces (the query ends at
# the first), and a "?" more than once.
QUERY_PIECES = st.sampled_from(
    [
        "?",
        "&",
        "=",
        " ",
        "%",
        "%2D",
        "%20",
        "x-sharebatch-id=",
        "x-sharebatch-id",
        "my-x-sharebatch-id=",
        "x%2Dsharebatch-id=",
        "X-Amz-Credential=A%2F1",
        ID,
        "%33f9a",
        "a",
        "/",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(QUERY_PIECES, max_size=12), st.sampled_from(["GET /b/k", "GET /b/k?", ""]))
def test_the_id_scan_rows_reads_is_link_id_of_for_any_query(pieces: list[str], start: str) -> None:
    """Whatever a Request-URI's query holds around ``x-sharebatch-id`` (the name twice, in
    the path, encoded, after a space, empty, cut short), ``scan_rows`` reads the id
    ``link_id_of`` reads, and its row holds exactly the fields of the exact parser's hit."""
    uri = start + "".join(pieces) + " HTTP/1.1"
    text = log_line(
        bucket="q3-share",
        time=datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC),
        request_uri=uri,
        key="reports/q3.pdf",
    )
    exact = [_exact("f", 3, text)]
    rows = scan_rows("f", 3, [text])
    assert rows == scan_rows_of(exact)
    expected = link_id_of(uri)
    assert [row[0] for row in rows.hits] == ([] if expected is None else [expected])
    assert rows.other == (expected is None)
    assert [tuple(hit) for hit in scan_lines("f", 3, [text]).hits] == rows.hits


@settings(max_examples=300, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=6))
def test_scan_rows_are_scan_lines_hits_as_plain_tuples(texts: list[str]) -> None:
    """``scan_rows`` (what ``usage`` reads) gives, for any lines, the same counts and bad
    lines as ``scan_lines`` and each hit's fields in ``Hit``'s order."""
    scan, rows = scan_lines("f", 1, texts), scan_rows("f", 1, texts)
    assert (rows.other, rows.bad, rows.lines) == (scan.other, scan.bad, scan.lines)
    assert rows.hits == [tuple(hit) for hit in scan.hits]


def _scan_text_whole(text: str, first: int, most: int) -> tuple[list[ScanRows], int]:
    """Every batch ``scan_text`` gives of ``text``, ``most`` lines at a time, as
    ``sources`` reads a chunk; and how many lines they read."""
    batches, at, read = [], 0, 0
    while at <= len(text):
        rows, at, count = scan_text("f", first + read, text, at, most)
        batches.append(rows)
        read += count
    return batches, read


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(lines(), st.just(""), st.just("\r")), min_size=1, max_size=8),
    st.integers(1, 4),
)
def test_scan_text_reads_a_chunk_as_scan_rows_reads_its_lines(texts: list[str], most: int) -> None:
    """Lines matched where they lie in a chunk (``scan_text``: from a line's start to its
    end, never copied out) give what ``scan_rows`` gives of the same lines split apart,
    which the tests above hold to the exact parser: the same hits, counts and bad lines
    with their numbers, however many lines a batch takes, empty and CR-only lines included."""
    batches, read = _scan_text_whole("\n".join(texts), 5, most)
    assert read == len(texts)
    assert len(batches) == -(-len(texts) // most)
    expected = scan_rows_of(
        [item for n, text in enumerate(texts, 5) for item in parse_lines("f", n, [text])]
    )
    assert (
        ScanRows(
            [hit for rows in batches for hit in rows.hits],
            sum(rows.other for rows in batches),
            [bad for rows in batches for bad in rows.bad],
        )
        == expected
    )


def test_scan_rows_reads_a_line_holding_a_newline_as_one_line() -> None:
    """``scan_rows`` is given lines; one that holds a newline anyway is read as one line,
    the exact way, as ``parse_lines`` reads it, not cut in two by ``scan_text``."""
    good = log_line(bucket="b", time=datetime(2026, 12, 2, tzinfo=UTC), request_uri=SIGNED, key="k")
    texts = [good, good + "\nx", "", good]
    expected = scan_rows_of(
        [item for n, text in enumerate(texts, 1) for item in parse_lines("f", n, [text])]
    )
    assert scan_rows("f", 1, texts) == expected
    assert scan_rows("f", 1, []) == ScanRows([], 0, [])


# The remote address's IPv4 form before its three repeated octets were written out: the
# oracle the pattern in use is held to.
_OLD_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.text("0123456789.", max_size=18),
        st.lists(st.integers(0, 999).map(str), min_size=1, max_size=5).map(".".join),
    )
)
def test_the_written_out_ipv4_form_is_the_repeated_one(text: str) -> None:
    """The IPv4 pattern with its octets written out accepts exactly what the repeated form
    did, alone and inside the fast pattern (the same lines, the same fields)."""
    assert bool(re.fullmatch(_IPV4_TEXT, text)) == bool(re.fullmatch(_OLD_IPV4, text))
    line = log_line(
        bucket="b",
        time=datetime(2026, 12, 2, tzinfo=UTC),
        request_uri=SIGNED,
        key="k",
        remote_ip=text or "-",
    )
    old = re.compile(_SCAN.pattern.replace(_IPV4_TEXT, _OLD_IPV4))
    new, was = _SCAN.match(line), old.match(line)
    assert (new is None) == (was is None)
    assert new is None or was is None or new.groups() == was.groups()


def _id_by_finds(uri: str) -> str | None:
    """The plain case of ``link_id_of`` as ``scan_rows`` found it before ``_ID_AT``: the
    oracle the search is held to (the value as written, not decoded)."""
    query = uri.find("?")
    if query < 0:
        return None
    found = uri.find(_NAME_IS, query)
    while found >= 0 and uri[found - 1] not in "?&":
        found = uri.find(_NAME_IS, found + 1)
    if found < 0:
        return None
    begin = found + len(_NAME_IS)
    end = uri.find("&", begin)
    if end < 0:
        end = len(uri)
    space = uri.find(" ", begin, end)
    return uri[begin : end if space < 0 else space]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(QUERY_PIECES, st.sampled_from(["?", "&", " ", "=", "x"])), max_size=14))
def test_the_id_search_finds_what_the_finds_found(pieces: list[str]) -> None:
    """``_ID_AT`` searched from the first "?" finds the value the loop of ``find``s found:
    the first name after a "?" or "&" past the query's start, up to "&", space or the end."""
    uri = "".join(pieces)
    query = uri.find("?")
    found = None if query < 0 else _ID_AT.search(uri, query)
    assert (None if found is None else found[1]) == _id_by_finds(uri)
