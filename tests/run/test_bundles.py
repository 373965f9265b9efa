"""Bundle files: atomic, private, deterministic."""

from __future__ import annotations

import csv
import io
import json
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.errors import UsageError
from sharebatch.files import write_json
from sharebatch.lifecycle.inspect import read_bundle
from sharebatch.models import Link, ObjectRef
from sharebatch.run import bundles
from sharebatch.run.bundles import COLUMNS, PartFile, write_bundle
from sharebatch.run.folder import RunFolder
from sharebatch.times import iso
from sharebatch.visible import escaped
from tests.support import tricky
from tests.support.headers import sample_header

WHEN = datetime(2026, 11, 28, 20, 15, tzinfo=UTC)


def _link(key: str, expires_hour: int = 21) -> Link:
    obj = ObjectRef("bkt", key, 10, "etag", WHEN)
    return Link(
        "job",
        "alice",
        obj,
        "GET",
        WHEN,
        WHEN.replace(hour=expires_hour),
        f"https://x/{key}?X-Amz-Signature=s",
    )


def _parts(folder: Path, keys: list[list[str]]) -> list[PartFile]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, group in enumerate(keys):
        part = PartFile(folder / f"{index}.jsonl")
        part.write(_link(k) for k in group)
        part.close()
        parts.append(part)
    return parts


def test_parts_are_joined_in_order(tmp_path: Path) -> None:
    """Rows come out part by part in the order given (prefix order), each part as written."""
    parts = _parts(tmp_path, [["b/2", "b/3"], [], ["a/1"]])
    written = write_bundle(tmp_path / "out", sample_header(), parts)
    with (tmp_path / "out" / "links.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == ["b/2", "b/3", "a/1"]
    assert list(rows[0]) == list(COLUMNS)
    data = json.loads((tmp_path / "out" / "links.json").read_text())
    assert [r["key"] for r in data["links"]] == ["b/2", "b/3", "a/1"]
    assert [w.rows for w in written] == [3, 3]


def test_empty_bundle_is_valid_json(tmp_path: Path) -> None:
    """A recipient with nothing to receive still gets well-formed, empty files."""
    write_bundle(tmp_path / "out", sample_header(), _parts(tmp_path, [[]]))
    assert json.loads((tmp_path / "out" / "links.json").read_text())["links"] == []
    assert (tmp_path / "out" / "links.csv").read_text().splitlines() == [",".join(COLUMNS)]


def test_joining_in_small_blocks_changes_no_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are copied into bundles in blocks; blocks that cut rows, escapes and multi-byte
    characters anywhere give the same bytes as rows written one by one, and the JSON and
    CSV read back to the keys as written."""
    keys = [["a/1", 'q"uote,comma', "line\nbreak\r\n"], [], ["é/ファイル \u2028 x", "=cmd"]]
    whole = tmp_path / "whole"
    write_bundle(whole, sample_header(), _parts(tmp_path / "p1", keys))
    real = bundles._blocks
    monkeypatch.setattr(bundles, "_blocks", lambda path: real(path, size=3))
    small = tmp_path / "small"
    write_bundle(small, sample_header(), _parts(tmp_path / "p2", keys))
    for name in ("links.json", "links.csv"):
        assert (small / name).read_bytes() == (whole / name).read_bytes()
    flat = [k for group in keys for k in group]
    assert [r["key"] for r in json.loads((small / "links.json").read_text())["links"]] == flat
    with (small / "links.csv").open(newline="", encoding="utf-8") as handle:
        cells = [r["key"] for r in csv.DictReader(handle)]
    assert cells == [
        "a/1",
        'q"uote,comma',
        "line\\x0abreak\\x0d\\x0a",
        "é/ファイル \\u2028 x",
        "'=cmd",
    ]


def test_failure_mid_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If writing fails half-way, neither bundle file nor any temporary file remains."""
    parts = _parts(tmp_path, [["a"], ["b", "c"]])
    calls = 0
    real = PartFile.json_chunks

    def breaking(self: PartFile):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:  # the first part is written by now
            raise OSError("disk full")
        yield from real(self)

    monkeypatch.setattr(PartFile, "json_chunks", breaking)
    dest = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        write_bundle(dest, sample_header(), parts)
    assert calls == 2
    assert list(dest.iterdir()) == []


def test_existing_bundle_is_replaced_whole(tmp_path: Path) -> None:
    """A rename swaps the file at once: a reader sees the old bundle or the new, never a mix."""
    dest = tmp_path / "out"
    write_bundle(dest, sample_header(links=1), _parts(tmp_path, [["old"]]))
    before = (dest / "links.json").stat().st_ino
    write_bundle(dest, sample_header(links=2), _parts(tmp_path, [["new"]]))
    assert (dest / "links.json").stat().st_ino != before
    assert json.loads((dest / "links.json").read_text())["links"][0]["key"] == "new"


def test_private_modes_whatever_the_umask(tmp_path: Path) -> None:
    """Files are 0600 and folders 0700 even under a permissive umask such as 0000."""
    import os

    old = os.umask(0)
    try:
        folder = RunFolder.create(tmp_path / "deep" / "out", "run-1")
        write_bundle(folder.bundle_dir("job", "alice"), sample_header(), _parts(tmp_path, [["k"]]))
        write_json(folder.summary_path, {"ok": True})
    finally:
        os.umask(old)
    for path in [tmp_path / "deep", *(tmp_path / "deep").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_run_folder_is_never_reused(tmp_path: Path) -> None:
    """Creating a run folder that exists is refused rather than mixed with an older run."""
    RunFolder.create(tmp_path, "run-1")
    with pytest.raises(UsageError, match="already exists"):
        RunFolder.create(tmp_path, "run-1")


def test_a_json_only_route_stages_no_csv_rows(tmp_path: Path) -> None:
    """A part for a route without CSV bundles writes no CSV rows; its JSON bundle is whole,
    and asking it for CSV is an error, not an empty file."""
    part = PartFile(tmp_path / "0.jsonl", csv=False)
    part.write([_link("a/1"), _link("a/2")])
    part.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.jsonl"]
    written = write_bundle(tmp_path / "out", sample_header(), [part], formats=("json",))
    assert [w.path.name for w in written] == ["links.json"]
    links = json.loads((tmp_path / "out" / "links.json").read_text())["links"]
    assert [r["key"] for r in links] == ["a/1", "a/2"]
    with pytest.raises(ValueError, match="without CSV rows"):
        write_bundle(tmp_path / "csv", sample_header(), [part], formats=("csv",))


KEYS = [
    "x\ty.pdf",
    "x\\x09y.pdf",
    "C:\\reports\\q3.pdf",
    "trail\\",
    "=HYPERLINK(1)",
    "'=HYPERLINK(1)",
    "'quoted",
    "-2",
    "evil/\u202egnp.exe.pdf",
    "bell\x07\\u0007",
]


def test_link_id_sits_right_before_url_in_both_forms(tmp_path: Path) -> None:
    """links.csv has a link_id column just before url (empty when ids are off); links.json
    rows a link_id field there (null when off)."""
    assert COLUMNS[-2:] == ("link_id", "url")
    part = PartFile(tmp_path / "p.jsonl")
    when = datetime(2026, 11, 28, tzinfo=UTC)
    obj = ObjectRef("b", "k", 1, "e", when)
    part.write(
        [
            Link("j", "r", obj, "GET", when, when, "https://h/k?a=1", "00000000000000ab"),
            Link("j", "r", obj, "GET", when, when, "https://h/k?a=2"),
        ]
    )
    part.close()
    rows = list(part.rows_in_order())
    assert [list(r)[-2:] for r in rows] == [["link_id", "url"]] * 2
    assert [r["link_id"] for r in rows] == ["00000000000000ab", None]
    assert part.csv_path is not None
    cells = part.csv_path.read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[-2] for line in cells] == ["00000000000000ab", ""]


def test_csv_cells_keep_a_tab_and_the_text_backslash_x09_apart() -> None:
    """A real tab and the four characters \\x09 give different cells: the backslash is doubled."""
    assert bundles.csv_cell("x\ty.pdf") == "x\\x09y.pdf"
    assert bundles.csv_cell("x\\x09y.pdf") == "x\\\\x09y.pdf"
    assert bundles.csv_cell("'=x") == "\\x27=x"  # not read back as the neutralised "=x"
    assert bundles.csv_cell("=x") == "'=x"


def test_keys_round_trip_through_links_csv(tmp_path: Path) -> None:
    """Every key read back from links.csv (read_bundle) equals the key in links.json: tabs,
    backslashes, escapes as text, formula starts, a leading quote, bidi overrides."""
    write_bundle(tmp_path / "out", sample_header(), _parts(tmp_path, [KEYS]))
    from_csv = read_bundle(tmp_path / "out" / "links.csv")
    from_json = read_bundle(tmp_path / "out" / "links.json")
    assert [row.key for row in from_csv.rows] == [row.key for row in from_json.rows] == KEYS
    assert [row.url for row in from_csv.rows] == [row.url for row in from_json.rows]


def test_csv_cells_shortcut_holds_for_every_code_point() -> None:
    """csv_cell skips escaped() for printable text without a backslash: no such character
    is one escaped() would change."""
    printable = (chr(c) for c in range(0x110000) if chr(c).isprintable() and c != 0x5C)
    assert [c for c in printable if escaped(c) != c] == []


def test_a_file_refused_at_its_commit_takes_the_files_committed_before_it_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle's files are committed one by one (uploads.csv first); if a later one cannot
    be (a full disk at its rename), a renewal must not leave a lone uploads file behind:
    none of the call's files stays, and the error is the disk's."""
    real = bundles.atomic_writer

    @contextmanager
    def refusing(dest: Path, **kwargs: Any) -> Iterator[Any]:
        with real(dest, **kwargs) as out:
            yield out
            if dest.suffix == ".json":
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundles, "atomic_writer", refusing)
    dest = tmp_path / "out"
    slot = {"recipient": "alice", "bucket": "bkt", "method": "PUT", "key": "inbox/x.pdf"}
    with pytest.raises(OSError, match="No space left"):
        write_bundle(
            dest, sample_header(), _parts(tmp_path, [["a"]]), stem="links.renewed-x",
            replace=False, uploads=[slot], uploads_name="uploads.renewed-x.csv",
        )  # fmt: skip
    assert list(dest.iterdir()) == []


def _encoded(link: Link) -> tuple[str, str]:
    """The staged JSON line and CSV row as the encoders themselves make them."""
    row = bundles.link_row(link)
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerow([bundles.csv_cell(row[n]) for n in COLUMNS])
    return json.dumps(row, ensure_ascii=False) + "\n", out.getvalue()


def _drawn_link(draw: st.DrawFn, text: st.SearchStrategy[str]) -> Link:
    when = draw(st.sampled_from([WHEN, datetime(999, 1, 2, tzinfo=UTC)]))
    obj = ObjectRef(
        draw(st.one_of(tricky.plain(), text)),
        draw(st.one_of(tricky.plain(), text)),
        draw(st.integers(-5, 10**15)),
        draw(st.one_of(st.just("0" * 32), text)),
        when,
    )
    link_id = draw(st.one_of(st.none(), st.just("00000000000000ab"), st.just(""), text))
    url = "https://h/" + draw(st.one_of(tricky.plain(), text)) + "?X-Amz-Signature=s"
    recipient = draw(st.one_of(tricky.plain(), text))
    return Link("job", recipient, obj, "GET", when, when, url, link_id)


@st.composite
def _links(draw: st.DrawFn, surrogates: bool = True) -> Link:
    return _drawn_link(draw, tricky.texts(surrogates=surrogates))


@given(_links())
@settings(max_examples=150, deadline=None)
def test_a_row_built_as_text_is_the_encoders_bytes(link: Link) -> None:
    """plain_row gives exactly json.dumps' line and the csv module's row of csv_cell values,
    or declines: controls, bidi, quotes, backslashes, commas, formula starts, non-BMP."""
    built = bundles.plain_row(link)
    assert built is None or built == _encoded(link)


@given(tricky.plain(), tricky.plain())
@settings(deadline=None)
def test_ordinary_rows_are_built_as_text(key: str, recipient: str) -> None:
    """A key with nothing to escape takes the fast path (so the test above tests something)."""
    link = Link("job", recipient or "r", ObjectRef("bkt", key or "k", 1, "0" * 32, WHEN), "GET",
                WHEN, WHEN, f"https://h/{key}?X-Amz-Signature=s", "00000000000000ab")  # fmt: skip
    assert bundles.plain_row(link) == _encoded(link)


@given(st.lists(_links(surrogates=False), max_size=8), st.booleans())
@settings(max_examples=150, deadline=None)
def test_staged_parts_hold_the_encoders_bytes(links: list[Link], with_csv: bool) -> None:
    """What PartFile.write stages, in chunks, is byte for byte the encoders' text per row,
    whichever rows took the fast path."""
    with tempfile.TemporaryDirectory(prefix="sharebatch-test-") as name:
        part = PartFile(Path(name) / "p.jsonl", csv=with_csv)
        part.write(links[:3])
        part.write(links[3:])
        part.close()
        texts = [_encoded(link) for link in links]
        if links:
            assert part.path.read_bytes() == "".join(t[0] for t in texts).encode()
            if with_csv:
                assert part.csv_path is not None
                assert part.csv_path.read_bytes() == "".join(t[1] for t in texts).encode()
        assert part.rows == len(links)
        assert part.earliest_expiry == (min(lk.expires_at for lk in links) if links else None)


@st.composite
def _chunks(draw: st.DrawFn) -> tuple[str, list[ObjectRef], list[str], list[str] | None]:
    """A chunk as ``Signer.sign_columns`` gives it: one recipient, its objects, URLs, ids."""
    text = tricky.texts(surrogates=False)
    links = draw(st.lists(_links(surrogates=False), max_size=6))
    recipient = draw(st.one_of(tricky.plain(), text))
    ids = [link.link_id or "" for link in links] if draw(st.booleans()) else None
    return recipient, [link.obj for link in links], [link.url for link in links], ids


@given(_chunks(), st.booleans())
@settings(max_examples=150, deadline=None)
def test_a_chunk_staged_from_columns_is_the_links_bytes(
    chunk: tuple[str, list[ObjectRef], list[str], list[str] | None], with_csv: bool
) -> None:
    """PartFile.write_columns stages exactly what PartFile.write stages for the same links
    (which the test above holds to the encoders), rows that need care among plain ones."""
    recipient, objects, urls, ids = chunk
    given_ids = ids if ids is not None else [None] * len(objects)
    links = [
        Link("job", recipient, obj, "GET", WHEN, WHEN, url, link_id)
        for obj, url, link_id in zip(objects, urls, given_ids, strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="sharebatch-test-") as name:
        by_links = PartFile(Path(name) / "a.jsonl", csv=with_csv).in_memory()
        by_links.write(links)
        by_columns = PartFile(Path(name) / "b.jsonl", csv=with_csv).in_memory()
        by_columns.write_columns("job", recipient, objects, urls, ids, WHEN, WHEN)
        assert by_columns.take() == by_links.take()
        assert (by_columns.rows, by_columns.earliest_expiry) == (
            by_links.rows,
            by_links.earliest_expiry,
        )


@given(st.lists(tricky.plain(), min_size=1, max_size=8), tricky.plain(), st.booleans())
@settings(deadline=None)
def test_a_plain_chunk_is_staged_at_once_as_the_links_bytes(
    keys: list[str], recipient: str, with_ids: bool
) -> None:
    """A chunk of rows with nothing to escape is staged in one piece (its tests run once over
    the chunk), and that piece is what PartFile.write stages for the same links."""
    objects = [ObjectRef("bkt", key or "k", i, "0" * 32, WHEN) for i, key in enumerate(keys)]
    urls = [f"https://h/{o.key}?X-Amz-Signature=s" for o in objects]
    ids = [f"{i:016x}" for i in range(len(objects))] if with_ids else None
    given_ids = ids if ids is not None else [None] * len(objects)
    links = [
        Link("job", recipient or "r", obj, "GET", WHEN, WHEN, url, link_id)
        for obj, url, link_id in zip(objects, urls, given_ids, strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="sharebatch-test-") as name:
        by_links = PartFile(Path(name) / "a.jsonl").in_memory()
        by_links.write(links)
        by_columns = PartFile(Path(name) / "b.jsonl").in_memory()
        at_once = by_columns._plain_chunk(
            recipient or "r", objects, urls, given_ids, [iso(WHEN)] * len(objects), iso(WHEN)
        )
        assert at_once == all(bundles.plain_row(link) is not None for link in links)
        if not at_once:
            by_columns.write_columns("job", recipient or "r", objects, urls, ids, WHEN, WHEN)
        assert by_columns.take() == by_links.take()
        assert by_columns.rows == len(links)


def test_a_large_bundles_csv_copied_in_a_thread_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle large enough for its CSV to be copied in a thread of its own is, byte for byte
    and digest for digest, the bundle joined in one thread."""
    parts = _parts(tmp_path / "parts", [[f"a/{i}" for i in range(30)], [], ["b/1", "b/2"]])
    monkeypatch.setattr(bundles, "_THREADED_JOIN", 10**9)
    alone = write_bundle(tmp_path / "alone", sample_header(), parts)
    monkeypatch.setattr(bundles, "_THREADED_JOIN", 1)
    threaded = write_bundle(tmp_path / "threaded", sample_header(), parts)
    assert [w.sha256 for w in threaded] == [w.sha256 for w in alone]
    for name in ("links.csv", "links.json"):
        assert (tmp_path / "threaded" / name).read_bytes() == (
            tmp_path / "alone" / name
        ).read_bytes()


def test_a_csv_copy_failing_in_its_thread_fails_the_join_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV copy that breaks in its thread (a full disk) is the join's error, and neither
    bundle file nor any temporary file remains."""
    parts = _parts(tmp_path / "parts", [["a"], ["b", "c"]])

    def breaking(self: PartFile) -> Iterator[bytes]:
        raise OSError("disk full")

    monkeypatch.setattr(bundles, "_THREADED_JOIN", 1)
    monkeypatch.setattr(PartFile, "csv_chunks", breaking)
    dest = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        write_bundle(dest, sample_header(), parts)
    assert list(dest.iterdir()) == []
