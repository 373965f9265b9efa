"""S3 Inventory as a source, end to end on moto: the same rows as a listing, and every refusal.

Each test seeds a bucket, writes an inventory report of it in AWS's layout (tests/support/
inventory.py) and runs a manifest with two jobs through the CLI: ``listed`` lists the bucket,
``inv`` reads the report. Bundles are compared row by row, URLs and link ids aside.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.inventory import reader
from sharebatch.s3.gateway import S3Gateway
from tests.support.inventory import (
    COLUMNS,
    MOMENT,
    Row,
    Written,
    csv_gz,
    replace_data,
    rewrite_manifest,
    rows_of,
    write_inventory,
)
from tests.support.linkkit import audit_events
from tests.support.s3 import S3, write_manifest

SOURCE = "src-bucket"
DEST = "inventory-dest"
FILES = {
    "shared/a.txt": b"a",
    "shared/with space.txt": b"space",
    "shared/plus+sign.txt": b"plus",
    "shared/100%.txt": b"percent",
    "shared/caf\u00e9/na\u00efve \u65e5\u672c.txt": b"unicode",
    "shared/sub/deep.csv": b"deep,1",
    "shared/Z-upper.txt": b"upper",
    "shared/empty.txt": b"",
    "shared/folder/": b"",
    "shared/~tilde&amp.txt": b"amp",
    "other/outside.txt": b"outside",
}


def _manifest(tmp_path: Path, source: str, *, prefixes: str = "[shared/]") -> Path:
    return write_manifest(
        tmp_path / "m.yml",
        f"""\
version: 1
defaults:
  bucket: {SOURCE}
  region: eu-west-1
  expires_in: 1h
jobs:
  - name: listed
    prefixes: {prefixes}
    recipients: [{{id: r}}]
  - name: inv
    source: {source}
    prefixes: {prefixes}
    recipients: [{{id: r}}]
""",
    )


def _run(s3: S3, tmp_path: Path, manifest: Path, exit_code: int = 0, *options: str) -> Path:
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--out",
            str(tmp_path / "out"),
            "--endpoint-url",
            s3.endpoint,
            *options,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == exit_code, result.stderr
    runs = list((tmp_path / "out").iterdir())
    runs = [r for r in runs if r.is_dir()]
    assert len(runs) == 1
    return runs[0]


def _rows(run_dir: Path, job: str) -> list[dict[str, Any]]:
    data = json.loads((run_dir / job / "r" / "links.json").read_text(encoding="utf-8"))
    return [
        {k: v for k, v in row.items() if k not in ("url", "link_id", "expires_at")}
        for row in data["links"]
    ]


@pytest.fixture(params=["in the run", "in children"])
def parsers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """CSV data files parsed in the run's process (small reports), or, whatever their size,
    by three child processes (``inventory/parsing``): how many parsers the run should use."""
    if request.param == "in the run":
        return 0
    monkeypatch.setattr(reader, "PARSE_APART", 0)
    monkeypatch.setattr(reader, "cores", lambda: 3)
    return 3


def _seed(s3: S3) -> list[Row]:
    s3.bucket(SOURCE, FILES)
    return rows_of(s3, SOURCE)


def _extras(rows: list[Row]) -> list[Row]:
    """What a report "with all versions" also holds, which a listing never shows."""
    first = rows[0]
    return [
        *rows,
        Row("shared/gone.txt", 0, "", first.last_modified, delete_marker=True, version="v2"),
        Row("shared/old-version.txt", 5, "0" * 32, first.last_modified, latest=False),
        Row("shared/marker/", 0, "d41d8cd98f00b204e9800998ecf8427e", first.last_modified),
    ]


def test_csv_inventory_gives_the_listing_rows(s3: S3, tmp_path: Path, parsers: int) -> None:
    """A CSV.gz report (keys URL-encoded, rows shuffled over three files, delete markers,
    old versions and folder markers among them) gives the rows a listing gives, in its order,
    parsed in the run or by child processes; the header and summary name the report and its
    time."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_extras(_seed(s3)))
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, f"{{inventory: '{written.uri}'}}"))
    listed, inv = _rows(run_dir, "listed"), _rows(run_dir, "inv")
    assert len(listed) == 9
    assert inv == listed
    [event] = audit_events_named(run_dir, "inventory_read")
    assert (event["parsers"], event["rows"], event["kept"]) == (parsers, 10, 9)
    assert not list((tmp_path / "out").glob("*/.staging"))
    header = json.loads((run_dir / "inv" / "r" / "links.json").read_text())["header"]
    assert header["inventory"] == {
        "source": written.uri,
        "manifest": f"s3://{DEST}/{written.manifest}",
        "created_at": MOMENT.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert (
        "inventory"
        not in json.loads((run_dir / "listed" / "r" / "links.json").read_text())["header"]
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    [report] = summary["inventories"]
    assert report["created_at"] == MOMENT.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (report["rows"], report["kept"], report["status"]) == (10, 9, "read")


def test_inventory_pages_go_to_signing_workers_too(s3: S3, tmp_path: Path) -> None:
    """With --workers 2 the report's pages are signed in worker processes: the same rows."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_extras(_seed(s3)))
    manifest = _manifest(tmp_path, f"{{inventory: '{written.uri}'}}")
    run_dir = _run(s3, tmp_path, manifest, 0, "--workers", "2")
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")
    assert len(_rows(run_dir, "inv")) == 9


def test_parquet_inventory_gives_the_listing_rows(s3: S3, tmp_path: Path) -> None:
    """A Parquet report (typed columns, keys as they are) gives the same rows too."""
    written = write_inventory(
        s3, bucket=DEST, source_bucket=SOURCE, rows=_extras(_seed(s3)), file_format="Parquet"
    )
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, f"{{inventory: '{written.uri}'}}"))
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")
    assert json.loads((run_dir / "summary.json").read_text())["inventories"][0]["format"] == (
        "Parquet"
    )


def test_spilled_runs_give_the_same_order(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parsers: int
) -> None:
    """With memory bounded to 2 rows (each of three parsers holding 1), sorted runs go to
    disk and are merged: same rows."""
    files = {f"shared/k{(i * 37) % 101:03d}-{i}.txt": str(i).encode() for i in range(60)}
    s3.bucket(SOURCE, files)
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=rows_of(s3, SOURCE))
    monkeypatch.setattr(reader, "DEFAULT_BOUND", 2)
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, f"{{inventory: '{written.uri}'}}"))
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")
    assert len(_rows(run_dir, "inv")) == 60
    [event] = audit_events_named(run_dir, "inventory_read")
    assert event["spilled_runs"] >= 3  # a run per data file at least: each batch goes over
    assert event["parsers"] == parsers


def audit_events_named(run_dir: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(run_dir) if e["event"] == name]


def test_newest_report_is_read_once_for_every_prefix(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of two dated reports the newest is read, and once, for two prefixes and two jobs."""
    rows = _seed(s3)
    old = write_inventory(
        s3,
        bucket=DEST,
        source_bucket=SOURCE,
        rows=rows[:2],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    new = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=rows, create_bucket=False)
    reads: list[str] = []
    original = S3Gateway.read_object

    def spy(self: S3Gateway, target: Any, key: str, **options: Any) -> Any:
        reads.append(key)
        return original(self, target, key, **options)

    monkeypatch.setattr(S3Gateway, "read_object", spy)
    manifest = _manifest(
        tmp_path, f"{{inventory: '{new.uri}'}}", prefixes="[shared/sub/, shared/c]"
    )
    run_dir = _run(s3, tmp_path, manifest)
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")
    assert _keys(run_dir, "inv") == [
        "shared/sub/deep.csv",
        "shared/caf\u00e9/na\u00efve \u65e5\u672c.txt",
    ]
    assert reads.count(new.manifest) == 1
    assert old.manifest not in reads
    assert sorted(k for k in reads if "/data/" in k) == sorted(new.data)


def _keys(run_dir: Path, job: str) -> list[str]:
    return [row["key"] for row in _rows(run_dir, job)]


def test_a_named_manifest_is_read(s3: S3, tmp_path: Path) -> None:
    """An s3:// URI ending in manifest.json names the report itself."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_seed(s3))
    uri = f"s3://{DEST}/{written.manifest}"
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, f"{{inventory: '{uri}', max_age: 30d}}"))
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")


def _bad_cases() -> list[Any]:
    def checksum(s3: S3, w: Written) -> None:
        s3.client.put_object(Bucket=DEST, Key=w.checksum, Body=b"0" * 32)

    def missing(s3: S3, w: Written) -> None:
        s3.client.delete_object(Bucket=DEST, Key=w.data[1])

    def no_key(s3: S3, w: Written) -> None:
        columns = tuple(c for c in COLUMNS if c != "Key")
        rewrite_manifest(s3, w, {"fileSchema": ", ".join(columns)})

    def unknown(s3: S3, w: Written) -> None:
        rewrite_manifest(s3, w, {"fileFormat": "XLSX"})

    def orc(s3: S3, w: Written) -> None:
        rewrite_manifest(s3, w, {"fileFormat": "ORC"})

    def truncated(s3: S3, w: Written) -> None:
        body = s3.client.get_object(Bucket=DEST, Key=w.data[0])["Body"].read()
        replace_data(s3, w, 0, body[: len(body) // 2], in_manifest=True)

    def not_utf8(s3: S3, w: Written) -> None:
        body = gzip.compress(b'"src-bucket","shared/\xff.txt","","true","false","1","x","e","S"\n')
        replace_data(s3, w, 1, body, in_manifest=True)

    def md5(s3: S3, w: Written) -> None:
        body = csv_gz(SOURCE, [Row("shared/a.txt", 1, "x", datetime(2026, 1, 1, tzinfo=UTC))])
        replace_data(s3, w, 2, body, in_manifest=False)

    def other_bucket(s3: S3, w: Written) -> None:
        rewrite_manifest(s3, w, {"sourceBucket": "another-bucket"})

    def no_report(s3: S3, w: Written) -> None:
        s3.client.delete_object(Bucket=DEST, Key=w.manifest)

    return [
        pytest.param(checksum, "BadChecksum", "manifest.json has MD5", id="checksum"),
        pytest.param(missing, "NoSuchKey", "data/", id="missing-data-file"),
        pytest.param(no_key, "BadSchema", "no Key column", id="schema-without-key"),
        pytest.param(unknown, "UnknownFormat", "'XLSX'", id="unknown-format"),
        pytest.param(orc, "UnsupportedFormat", "is ORC", id="orc"),
        pytest.param(truncated, "TruncatedFile", "cut short", id="truncated-gzip"),
        pytest.param(md5, "BadDataFile", "the manifest says", id="data-md5"),
        pytest.param(not_utf8, "BadRow", "not UTF-8 text", id="not-utf-8"),
        pytest.param(other_bucket, "WrongBucket", "'another-bucket'", id="source-bucket"),
        pytest.param(no_report, "NoInventory", "no <YYYY-MM-DDTHH-MMZ>", id="no-report"),
    ]


@pytest.mark.parametrize(("breaks", "code", "says"), _bad_cases())
def test_a_bad_report_fails_its_job_only(
    s3: S3, tmp_path: Path, breaks: Any, code: str, says: str, parsers: int
) -> None:
    """Each bad input, whether the run or child processes parse the data files: exit 1, the
    inventory job failed and named with the file, no bundle of it; the listed job's bundle
    is written."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_seed(s3))
    breaks(s3, written)
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, f"{{inventory: '{written.uri}'}}"), 1)
    assert not (run_dir / "inv").exists()
    assert len(_rows(run_dir, "listed")) == 9
    summary = json.loads((run_dir / "summary.json").read_text())
    [failure] = summary["failures"]
    assert failure["kind"] == "prefix"
    assert failure["error"] == code
    assert says in failure["message"]
    assert f"s3://{DEST}/inventory/" in failure["message"]
    assert summary["inventories"][0]["status"] == "failed"
    assert not (run_dir / ".staging").exists()


def test_a_stale_report_is_refused(s3: S3, tmp_path: Path) -> None:
    """A report older than max_age fails its job, saying when it was made."""
    written = write_inventory(
        s3,
        bucket=DEST,
        source_bucket=SOURCE,
        rows=_seed(s3),
        created_at=datetime(2001, 2, 3, tzinfo=UTC),
    )
    source = f"{{inventory: '{written.uri}', max_age: 8d}}"
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, source), 1)
    [failure] = json.loads((run_dir / "summary.json").read_text())["failures"]
    assert failure["error"] == "StaleInventory"
    assert "made at 2001-02-03T00:00:00Z" in failure["message"]
    assert "older than max_age 8.0 days" in failure["message"]
    assert not (run_dir / "inv").exists()


def test_a_fresh_report_within_max_age_is_read(s3: S3, tmp_path: Path) -> None:
    """A report made minutes ago passes max_age 8d."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_seed(s3), created_at=now)
    source = f"{{inventory: '{written.uri}', max_age: 8d}}"
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, source))
    assert _rows(run_dir, "inv") == _rows(run_dir, "listed")


def test_verify_sample_reports_drift(s3: S3, tmp_path: Path) -> None:
    """Objects gone or changed since the report are found by the sample's HEADs, named in
    the summary and the audit log."""
    rows = _seed(s3)
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=rows)
    s3.client.delete_object(Bucket=SOURCE, Key="shared/a.txt")
    s3.client.put_object(Bucket=SOURCE, Key="shared/plus+sign.txt", Body=b"longer now")
    source = f"{{inventory: '{written.uri}', verify_sample: 50}}"
    run_dir = _run(s3, tmp_path, _manifest(tmp_path, source))
    [report] = json.loads((run_dir / "summary.json").read_text())["inventories"]
    verify = report["verify"]
    assert verify["sampled"] == 9
    assert verify["drifted"] == 2
    assert [(d["key"], d["problem"]) for d in verify["drift"]] == [
        ("shared/a.txt", "missing"),
        ("shared/plus+sign.txt", "size"),
    ]
    events = audit_events_named(run_dir, "inventory_drift")
    assert sorted(e["key"] for e in events) == ["shared/a.txt", "shared/plus+sign.txt"]


def test_verify_sample_is_reproducible(s3: S3, tmp_path: Path) -> None:
    """A sample smaller than the report picks the same objects for the same report."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_seed(s3))
    for key, body in FILES.items():
        if key.startswith("shared/") and not key.endswith("/"):
            # Every object changed since the report: whichever are sampled have drifted.
            s3.client.put_object(Bucket=SOURCE, Key=key, Body=body + b"-changed")
    picked = []
    for attempt in range(2):
        out = tmp_path / str(attempt)
        out.mkdir()
        manifest = _manifest(out, f"{{inventory: '{written.uri}', verify_sample: 3}}")
        run_dir = _run(s3, out, manifest)
        [report] = json.loads((run_dir / "summary.json").read_text())["inventories"]
        picked.append([d["key"] for d in report["verify"]["drift"]])
    assert len(picked[0]) == 3
    assert picked[0] == picked[1]


def test_children_pick_the_sample_one_process_picks(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verify sample does not depend on who parsed which file: three child processes
    pick the objects the run's own process picks."""
    written = write_inventory(s3, bucket=DEST, source_bucket=SOURCE, rows=_seed(s3))
    for key, body in FILES.items():
        if key.startswith("shared/") and not key.endswith("/"):
            s3.client.put_object(Bucket=SOURCE, Key=key, Body=body + b"-changed")
    picked = []
    for attempt in ("here", "apart"):
        if attempt == "apart":
            monkeypatch.setattr(reader, "PARSE_APART", 0)
            monkeypatch.setattr(reader, "cores", lambda: 3)
        out = tmp_path / attempt
        out.mkdir()
        run_dir = _run(s3, out, _manifest(out, f"{{inventory: '{written.uri}', verify_sample: 4}}"))
        [report] = json.loads((run_dir / "summary.json").read_text())["inventories"]
        picked.append([d["key"] for d in report["verify"]["drift"]])
        [event] = audit_events_named(run_dir, "inventory_read")
        assert event["parsers"] == (3 if attempt == "apart" else 0)
    assert len(picked[0]) == 4
    assert picked[0] == picked[1]


def test_keys_are_decoded_as_s3_encodes_them() -> None:
    """'+' is a space, '%2B' a plus, '%25' a percent: the form encoding S3 writes."""
    from sharebatch.inventory.rows import Columns, CsvGzRows

    got: list[str] = []
    rows = CsvGzRows(Columns.of(list(COLUMNS), "t"), lambda b: got.extend(r[0] for r in b), "t")
    line = '"b","a+b%2Bc%25d%C3%A9","","true","false","1","2026-01-01T00:00:00.000Z","e","S"\n'
    rows.feed(gzip.compress(line.encode()))
    rows.finish()
    assert got == ["a b+c%d\u00e9"]
