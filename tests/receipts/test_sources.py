"""Access log sources: a folder or s3://bucket/prefix/ from the command line, and local folders
read file by file, line by line, in bounded memory, every problem a bad line."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sharebatch.errors import EXIT_USAGE, UsageError
from sharebatch.receipts import sources
from sharebatch.receipts.accesslog import AccessRecord, BadLine
from sharebatch.receipts.sources import LogSource, parse_source, read_batches, read_logs
from tests.support.accesslog import log_line

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def record(n: int, **fields: object) -> str:
    """Record ``n`` (a second apart) of a GET through link ``n``, with its newline."""
    values: dict[str, object] = {
        "bucket": "q3-share",
        "time": AT + timedelta(seconds=n),
        "request_uri": f"GET /q3-share/f{n}.pdf?x-sharebatch-id={n:016x} HTTP/1.1",
        "key": f"f{n}.pdf",
        "bytes_sent": n,
    }
    values.update(fields)
    return log_line(**values) + "\n"  # type: ignore[arg-type]


def read(source: LogSource) -> tuple[list[AccessRecord | BadLine], list[str]]:
    """Everything ``read_logs`` yields for a folder, and the files it said it started."""
    files: list[str] = []

    async def collect() -> list[AccessRecord | BadLine]:
        return [item async for item in read_logs(source, None, on_file=files.append)]

    return asyncio.run(collect()), files


def bad(items: list[AccessRecord | BadLine]) -> list[BadLine]:
    return [i for i in items if isinstance(i, BadLine)]


def ids(items: list[AccessRecord | BadLine]) -> list[str | None]:
    return [i.link_id for i in items if isinstance(i, AccessRecord)]


def test_a_folder_and_an_s3_prefix_are_sources(tmp_path: Path) -> None:
    """A folder is read as a folder; s3://bucket/prefix/ names the bucket and the prefix as
    given, and the source shows as it was typed."""
    folder = parse_source(str(tmp_path))
    assert (folder.folder, folder.bucket, str(folder)) == (tmp_path, None, str(tmp_path))
    s3 = parse_source("s3://log-bucket/logs/q3-share/")
    assert (s3.folder, s3.bucket, s3.prefix, str(s3)) == (
        None,
        "log-bucket",
        "logs/q3-share/",
        "s3://log-bucket/logs/q3-share/",
    )
    assert parse_source("s3://log-bucket").prefix == ""


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("", "access log source : not a folder"),
        ("missing-folder", "missing-folder: not a folder"),
        ("https://example.com/logs/", "https://example.com/logs/: neither a folder nor s3://"),
        ("gs://bucket/logs/", "gs://bucket/logs/: neither"),
        ("s3://", "s3://: no bucket name"),
        ("s3:///logs/", "s3:///logs/: no bucket name"),
        ("s3://bad bucket/", "no bucket name"),
        ("logs\x1b]0;pwned\x07", "logs\\x1b]0;pwned\\x07: not a folder"),
    ],
)
def test_anything_else_is_a_usage_error_naming_it(text: str, shown: str) -> None:
    """A missing folder, another scheme, an s3:// without a bucket: exit 2, the value named
    with its control characters escaped."""
    with pytest.raises(UsageError) as caught:
        parse_source(text)
    assert caught.value.exit_code == EXIT_USAGE
    assert shown in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_a_plain_file_is_not_a_folder(tmp_path: Path) -> None:
    """One log file given where a folder is expected is refused, named."""
    (tmp_path / "one.log").write_text(record(1))
    with pytest.raises(UsageError, match=r"one\.log: not a folder"):
        parse_source(str(tmp_path / "one.log"))


def test_files_are_read_sorted_recursively_in_line_order(tmp_path: Path) -> None:
    """Every regular file under the folder, each folder's names sorted, depth first; the
    records of each file in line order; ``on_file`` names each file as it starts."""
    layout = {
        "b.log": [5],
        "a/2026-12-01-10.log": [3, 4],
        "a/2026-12-01-09.log": [1, 2],
        "a/deeper/z.log": [6],
        "c/empty.log": [],
    }
    for name, numbers in layout.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(record(n) for n in numbers))
    items, files = read(parse_source(str(tmp_path)))
    assert ids(items) == [f"{n:016x}" for n in (1, 2, 3, 4, 6, 5)]
    assert [i.bytes_sent for i in items if isinstance(i, AccessRecord)] == [1, 2, 3, 4, 6, 5]
    assert files == [
        str(tmp_path / n)
        for n in (
            "a/2026-12-01-09.log",
            "a/2026-12-01-10.log",
            "a/deeper/z.log",
            "b.log",
            "c/empty.log",
        )
    ]


def test_an_empty_folder_yields_nothing(tmp_path: Path) -> None:
    """No files, no records, no bad lines: the caller says "no log files"."""
    (tmp_path / "sub").mkdir()
    assert read(parse_source(str(tmp_path))) == ([], [])


def test_a_gzip_file_is_one_bad_line_and_the_rest_is_read(tmp_path: Path) -> None:
    """S3 writes logs uncompressed: a gzip archive is reported once (not inflated, not one bad
    line per compressed chunk), and the plain files beside it still count."""
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(record(1).encode() * 100))
    (tmp_path / "b.log").write_text(record(2))
    items, _ = read(parse_source(str(tmp_path)))
    assert bad(items) == [
        BadLine(
            str(tmp_path / "a.log.gz"),
            0,
            "gzip-compressed; S3 writes access logs uncompressed: decompress it first",
        )
    ]
    assert ids(items) == [f"{2:016x}"]


def test_binary_json_and_cloudfront_files_are_named_once(tmp_path: Path) -> None:
    """A binary file, a CloudTrail log (JSON) and a CloudFront log (W3C) each give one bad
    line saying what it is, not one per line."""
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    trail = {"Records": [{"eventVersion": "1.08", "eventSource": "s3.amazonaws.com"}]}
    (tmp_path / "b.json").write_text(json.dumps(trail, indent=2))
    (tmp_path / "c.log").write_text(record(3))
    (tmp_path / "d.cf").write_text(
        "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method\n"
        + "2026-12-02\t09:00:00\tFRA2-C1\t4096\t192.0.2.1\tGET\n" * 50
    )
    items, _ = read(parse_source(str(tmp_path)))
    assert [(b.file, b.line, b.problem.split(",")[0].split(" (")[0]) for b in bad(items)] == [
        (str(tmp_path / "a.png"), 0, "binary data"),
        (str(tmp_path / "b.json"), 0, "JSON"),
        (str(tmp_path / "d.cf"), 0, "a W3C extended log"),
    ]
    assert ids(items) == [f"{3:016x}"]


def test_a_truncated_last_line_is_a_bad_line_and_a_whole_one_counts(tmp_path: Path) -> None:
    """A file cut off inside its last record reports that line as truncated; a last record
    that is whole but lacks its newline is read."""
    whole = record(1) + record(2)
    (tmp_path / "a.log").write_text(whole + record(3)[:150])
    (tmp_path / "b.log").write_text(record(4).rstrip("\n"))
    items, _ = read(parse_source(str(tmp_path)))
    [truncated] = bad(items)
    assert (truncated.file, truncated.line) == (str(tmp_path / "a.log"), 3)
    assert truncated.problem.startswith("truncated: the file ends inside this line (")
    assert ids(items) == [f"{n:016x}" for n in (1, 2, 4)]


def test_line_numbers_count_every_line_and_bad_lines_do_not_stop_the_file(
    tmp_path: Path,
) -> None:
    """Bad lines are numbered as an editor numbers them (blank lines included, not reported),
    and the records after them are read."""
    text = record(1) + "\n" + "garbage here\n" + record(2) + "   \n" + record(3)
    (tmp_path / "a.log").write_text(text)
    items, _ = read(parse_source(str(tmp_path)))
    assert [(b.line, b.problem) for b in bad(items)] == [
        (3, "not an S3 server access log record: 2 fields before the line ends")
    ]
    assert ids(items) == [f"{n:016x}" for n in (1, 2, 3)]


def test_a_byte_that_is_not_utf8_is_shown_not_fatal(tmp_path: Path) -> None:
    """A Latin-1 user agent (HTTP headers may carry one) stays readable as ``\\xe9``; the
    record and the ones after it count."""
    latin = record(1, user_agent="caf\x00").encode().replace(b"caf\x00", b"caf\xe9")
    (tmp_path / "a.log").write_bytes(latin + record(2).encode())
    items, _ = read(parse_source(str(tmp_path)))
    first = items[0]
    assert isinstance(first, AccessRecord)
    assert first.user_agent == "caf\\xe9"
    assert ids(items) == [f"{n:016x}" for n in (1, 2)]


def test_any_chunk_size_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines and multi-byte characters cut across chunk boundaries come out whole: reading in
    7-byte chunks gives what reading in 1 MiB chunks gives."""
    text = "".join(record(n, user_agent=f"agent-日本語-é-{n}") for n in range(40))
    (tmp_path / "a.log").write_text(text + "broken line\n" + record(99)[:-30])
    expected, _ = read(parse_source(str(tmp_path)))
    monkeypatch.setattr(sources, "CHUNK", 7)
    assert read(parse_source(str(tmp_path)))[0] == expected
    assert len(expected) == 42
    assert isinstance(expected[0], AccessRecord)
    assert expected[0].user_agent == "agent-日本語-é-0"


def test_an_endless_line_is_one_bad_line_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line longer than any record is reported once and skipped to its end; the records
    after it are read."""
    monkeypatch.setattr(sources, "CHUNK", 4096)
    (tmp_path / "a.log").write_bytes(
        record(1).encode() + b"x" * (3 * sources.MAX_LINE) + b"\n" + record(2).encode()
    )
    items, _ = read(parse_source(str(tmp_path)))
    assert [(b.line, b.problem) for b in bad(items)] == [
        (2, f"longer than {sources.MAX_LINE} bytes: not a record")
    ]
    assert ids(items) == [f"{n:016x}" for n in (1, 2)]


def test_symlinks_are_not_followed_out_of_the_folder(tmp_path: Path) -> None:
    """A symlink out of the folder is reported, not read; one into it is read once, where it
    points; a dangling one is reported; a pipe is reported, never opened."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text(record(9))
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "sub" / "real.log").write_text(record(1))
    (logs / "a-out.log").symlink_to(outside / "secret.log")
    (logs / "b-in.log").symlink_to(logs / "sub" / "real.log")
    (logs / "c-dir").symlink_to(outside)
    (logs / "d-dangling.log").symlink_to(tmp_path / "nowhere")
    os.mkfifo(logs / "e-pipe")
    items, files = read(parse_source(str(logs)))
    assert ids(items) == [f"{1:016x}"]
    assert files == [str(logs / "sub" / "real.log")]
    assert [(b.file, b.line, b.problem) for b in bad(items)] == [
        (str(logs / "a-out.log"), 0, "symlink out of the folder: not followed"),
        (str(logs / "c-dir"), 0, "symlink out of the folder: not followed"),
        (str(logs / "d-dangling.log"), 0, "dangling symlink: not read"),
        (str(logs / "e-pipe"), 0, "not a regular file (a pipe, socket or device): not read"),
    ]


def _peak_bytes(path: Path) -> tuple[int, int]:
    """(records read, tracemalloc's peak) for reading ``path``'s folder to the end."""

    async def drain() -> int:
        count = 0
        async for _ in read_logs(parse_source(str(path)), None):
            count += 1
        return count

    tracemalloc.start()
    try:
        count = asyncio.run(drain())
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_however_long_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading 10 times as many lines takes no more memory: peak allocations for 100,000
    lines stay within 1 MB of those for 10,000 (a chunk and its records are held, no more;
    chunks of 256 KiB so that even the small file is several)."""
    monkeypatch.setattr(sources, "CHUNK", 1 << 18)
    lines = [record(n) for n in range(2_000)]
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    for folder, copies in ((small, 5), (large, 50)):
        with (folder / "a.log").open("w") as handle:
            for _ in range(copies):
                handle.write("".join(lines))
    small_count, small_peak = _peak_bytes(small)
    large_count, large_peak = _peak_bytes(large)
    assert (small_count, large_count) == (10_000, 100_000)
    assert large_peak - small_peak < 1_000_000, (small_peak, large_peak)


def test_reading_a_large_file_lets_the_event_loop_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other tasks get their turn while a file is read: a ticker runs at least once per chunk
    read (each read is awaited in a worker thread)."""
    monkeypatch.setattr(sources, "CHUNK", 16_384)
    (tmp_path / "a.log").write_text("".join(record(n) for n in range(2_000)))
    chunks = -(-(tmp_path / "a.log").stat().st_size // sources.CHUNK)

    async def race() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        count = 0
        async for _ in read_logs(parse_source(str(tmp_path)), None):
            count += 1
        done.set()
        await task
        return count, ticks

    count, ticks = asyncio.run(race())
    assert count == 2_000
    assert ticks >= chunks


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("[02/Dec/2026", "[31/Feb/2026"), "time is not"),
        (("+0000]", "+9900]"), "time is not"),
        ((" 200 - 2 ", " " + "2" * 5000 + " - 2 "), "http_status is not a number S3 writes"),
        ((" 200 - 2 ", " 200 - " + "9" * 5000 + " "), "bytes_sent is not a number S3 writes"),
    ],
)
def test_a_time_or_number_that_does_not_convert_is_one_bad_line(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    """A record whose time does not exist or whose number is past int's digit limit is one
    bad line at its number; the records before and after it are read."""
    broken = record(2).replace(*change)
    assert broken != record(2)
    (tmp_path / "a.log").write_text(record(1) + broken + record(3))
    items, _ = read(parse_source(str(tmp_path)))
    assert ids(items) == [f"{n:016x}" for n in (1, 3)]
    assert [(b.line, b.problem.startswith(problem)) for b in bad(items)] == [(2, True)]


def test_a_line_longer_than_max_line_is_a_bad_line_wherever_it_sits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line over MAX_LINE bytes is one bad line, whether it sits inside a chunk, ends
    exactly at a chunk's end or spans chunks; a line of exactly MAX_LINE bytes is read; the
    numbering is the same for every chunk size."""
    limit = sources.MAX_LINE
    long_record = record(2, user_agent="A" * (4 * limit))
    exact = record(5, user_agent="")
    exact = exact.replace('""', '"' + "B" * (limit + 1 - len(exact)) + '"')
    assert len(exact) == limit + 1  # MAX_LINE bytes and its newline
    data = record(1) + long_record + record(3) + "x" * (limit + 1) + "\n\n" + exact + record(6)
    (tmp_path / "a.log").write_text(data)
    seen = set()
    for size in (4096, limit - 1, limit, limit + 1, len(record(1) + long_record), 1 << 20):
        monkeypatch.setattr(sources, "CHUNK", size)
        items, _ = read(parse_source(str(tmp_path)))
        seen.add(tuple(items))
        assert ids(items) == [f"{n:016x}" for n in (1, 3, 5, 6)], size
        too_long = f"longer than {limit} bytes: not a record"
        assert [(b.line, b.problem) for b in bad(items)] == [(2, too_long), (4, too_long)]
    assert len(seen) == 1


def test_a_file_of_tiny_bad_lines_is_read_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of one-character lines (256 KiB here, 1 MiB in use) is 131,072 bad lines, each
    with its own number, read with a peak far below the issue's 200 MB (parsed and held a
    batch of lines at a time; held all at once, a 1 MiB chunk's took 245 MB more than a clean
    file, this one's 28 MiB, against the 16 allowed)."""
    monkeypatch.setattr(sources, "CHUNK", 1 << 18)
    lines = 1 << 17
    (tmp_path / "a.log").write_bytes(b"x\n" * lines)
    last = 0

    async def drain() -> None:
        nonlocal last
        async for item in read_logs(parse_source(str(tmp_path)), None):
            assert isinstance(item, BadLine)
            assert item.line == last + 1
            last = item.line

    tracemalloc.start()
    try:
        asyncio.run(drain())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert last == lines
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"


def test_batches_are_read_logs_items_a_list_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_batches`` (what usage counts) yields lists of at most ``BATCH`` items which,
    one after another, are exactly ``read_logs``' items: records, bad lines and the bad line
    of a gzip file, in file and line order."""
    monkeypatch.setattr(sources, "BATCH", 7)
    (tmp_path / "a.log").write_text(
        "".join(record(n) for n in range(20)) + "not a record\n" + record(21)
    )
    (tmp_path / "b.log.gz").write_bytes(gzip.compress(record(22).encode() * 40))
    (tmp_path / "c.log").write_text(record(23))
    items, _ = read(parse_source(str(tmp_path)))

    async def collect() -> list[list[AccessRecord | BadLine]]:
        return [batch async for batch in read_batches(parse_source(str(tmp_path)), None)]

    batches = asyncio.run(collect())
    assert [item for batch in batches for item in batch] == items
    assert max(len(batch) for batch in batches) <= 7 and len(batches) >= 4
    assert ids(items) == [f"{n:016x}" for n in (*range(20), 21, 23)]
    assert [(b.file.rsplit("/", 1)[-1], b.line) for b in bad(items)] == [
        ("a.log", 21),
        ("b.log.gz", 0),
    ]
