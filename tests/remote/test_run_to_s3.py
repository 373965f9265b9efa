"""``sharebatch run --out s3://...`` on moto: the run folder published, private, complete.

The same manifest is run twice, once to a local OUT and once to S3; the S3 folder is
fetched back and compared with the local one: the same files, the same bundle rows (keys,
sizes, names), links aside (each run signs its own, at its own second, with its own ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app
from sharebatch.models import Connection
from sharebatch.remote.folders import fetch_folder, is_complete
from tests.support.faultproxy import fault_proxy
from tests.support.quarterly import BUCKET, MANIFEST
from tests.support.s3 import S3, write_manifest

RUNS = "runs-bucket"
FILES = {
    "reports/q3/summary.pdf": b"%PDF summary",
    "reports/q3/figures.csv": b"q,r\n3,100\n",
    "partners/globex/statement.pdf": b"%PDF globex",
    "partners/initech/notes.txt": b"initech notes",
}
# Each run's own: when it signed, its links and their ids, its folder and run id.
_PER_RUN = {"url", "link_id", "signed_at", "expires_at", "generated_at", "run_id", "page_url"}


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    audit.reset()  # the CLI pointed log lines at its own stderr, closed by now
    return result


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _without_run_facts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_run_facts(v) for k, v in value.items() if k not in _PER_RUN}
    if isinstance(value, list):
        return [_without_run_facts(v) for v in value]
    return value


@pytest.fixture
def seeded(s3: S3, tmp_path: Path) -> Path:
    """The quarterly bucket, an empty runs bucket, and the manifest."""
    s3.bucket(BUCKET, FILES)
    s3.bucket(RUNS, {})
    return write_manifest(tmp_path / "q.yml", MANIFEST)


def test_a_run_to_s3_publishes_the_folder_a_local_run_writes(
    s3: S3, tmp_path: Path, seeded: Path
) -> None:
    """Same files, same bundle rows; stdout is the folder's URI; summary.json present; the
    private work folder is gone afterwards."""
    local = _invoke("run", str(seeded), "--out", str(tmp_path / "out"), "--run-id", "r1",
                    "--endpoint-url", s3.endpoint)  # fmt: skip
    assert local.exit_code == 0, local.stderr
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    remote = _invoke("run", str(seeded), "--out", f"s3://{RUNS}/sharebatch/", "--run-id", "r1",
                     "--work-dir", str(work), "--endpoint-url", s3.endpoint)  # fmt: skip
    assert remote.exit_code == 0, remote.stderr
    assert remote.stdout.strip() == f"s3://{RUNS}/sharebatch/r1/"
    assert list(work.iterdir()) == []
    connection = Connection(endpoint_url=s3.endpoint)
    assert is_complete(f"s3://{RUNS}/sharebatch/r1/", connection=connection)

    fetched = tmp_path / "fetched"
    fetch_folder(f"s3://{RUNS}/sharebatch/r1/", fetched, connection=connection)
    ran = tmp_path / "out" / "r1"
    assert _files(fetched) == _files(ran)
    assert "q3/globex/links.json" in _files(fetched)
    for rel in _files(ran):
        if rel.endswith("links.json"):
            mine = json.loads((fetched / rel).read_text())
            theirs = json.loads((ran / rel).read_text())
            assert _without_run_facts(mine) == _without_run_facts(theirs), rel
            assert [r["key"] for r in mine["links"]] == [r["key"] for r in theirs["links"]]
    summary = json.loads((fetched / "summary.json").read_text())
    assert summary["status"] == "ok"


def test_a_publish_failing_midway_exits_1_and_leaves_no_summary(
    s3: S3, tmp_path: Path, seeded: Path
) -> None:
    """S3 refusing one bundle: exit 1 naming it, no summary.json under the run's prefix
    (a half-written folder), and the work folder removed all the same."""
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("denied", path=f"/{RUNS}/sb/r2/q3/initech/", times=None)
        result = _invoke("run", str(seeded), "--out", f"s3://{RUNS}/sb/", "--run-id", "r2",
                         "--work-dir", str(work), "--endpoint-url", proxy.url)  # fmt: skip
    assert result.exit_code == 1
    assert "AccessDenied" in result.stderr and "q3/initech/" in result.stderr
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=RUNS, Prefix="sb/r2/")["Contents"]]
    assert "sb/r2/summary.json" not in keys
    assert keys  # something was published: the folder is recognisably half-written
    assert not is_complete(f"s3://{RUNS}/sb/r2/", connection=Connection(endpoint_url=s3.endpoint))
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    ["s3:/runs-bucket/x/", "s3://Runs_Bucket/", "s3://runs-bucket/a//b/", "s3://runs-bucket/../x/"],
)
def test_bad_s3_uris_exit_2_with_nothing_written(
    s3: S3, tmp_path: Path, seeded: Path, bad: str
) -> None:
    """A malformed --out is exit 2 before anything runs: no folder, no object."""
    result = _invoke("run", str(seeded), "--out", bad, "--endpoint-url", s3.endpoint)
    assert result.exit_code == 2
    assert "--out" in result.stderr
    assert "Contents" not in s3.client.list_objects_v2(Bucket=RUNS)
    assert not any(p.name.startswith("s3") for p in Path.cwd().iterdir())


def test_an_occupied_run_prefix_is_refused_before_the_run(
    s3: S3, tmp_path: Path, seeded: Path
) -> None:
    """A run id whose folder already holds objects: exit 2, nothing listed or signed."""
    s3.client.put_object(Bucket=RUNS, Key="sb/r3/summary.json", Body=b"{}")
    result = _invoke("run", str(seeded), "--out", f"s3://{RUNS}/sb/", "--run-id", "r3",
                     "--endpoint-url", s3.endpoint)  # fmt: skip
    assert result.exit_code == 2
    assert "already holds objects" in result.stderr
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=RUNS)["Contents"]]
    assert keys == ["sb/r3/summary.json"]


def test_notify_and_work_dir_are_refused_where_they_cannot_apply(
    s3: S3, tmp_path: Path, seeded: Path
) -> None:
    """--notify needs a local run folder; --work-dir only means something with s3://."""
    notify = _invoke("run", str(seeded), "--out", f"s3://{RUNS}/sb/", "--notify",
                     "--endpoint-url", s3.endpoint)  # fmt: skip
    assert notify.exit_code == 2
    assert "--notify" in notify.stderr
    work = _invoke("run", str(seeded), "--out", str(tmp_path / "o"), "--work-dir", str(tmp_path),
                   "--endpoint-url", s3.endpoint)  # fmt: skip
    assert work.exit_code == 2
    assert not (tmp_path / "o").exists()
