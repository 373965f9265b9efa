"""Sharded runs on moto: shards and merges as real ``python -m sharebatch`` processes.

The manifest has prefixes shared by several recipients, a prefix narrower than another (merged
into it), a prefix of sub-folders that the run lists in parallel (a split), a filter and two
jobs, so a merge that put parts in any other order than one machine's would show.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.s3 import S3

BUCKET = "shard-bucket"
FILES = {
    "a/1.txt": b"a1",
    "a/2.csv": b"a2",
    "a/x/3.txt": b"ax3",
    "a/x/4.txt": b"ax4",
    "a/y/5.txt": b"ay5",
    "a/z/6.csv": b"az6",
    "a/zz.txt": b"azz",
    "b/1.txt": b"b1",
    "b/2.txt": b"b22",
    "c/1.txt": b"c1",
    "c/2.csv": b"c22",
    "d/1.txt": b"d1",
    "e/1.txt": b"e1",
    "e/2.txt": b"e2",
    'e/a, "quoted" one.txt': b"e3",  # quoted in CSV: rows joined by the csv module
    "f/1.txt": b"f1",
    "g/1.txt": b"g1",
}
MANIFEST = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: partners
    prefixes: [a/, b/]
    recipients:
      - {{id: alice}}
      - {{id: bob, prefixes: [c/]}}
      - {{id: carol, prefixes: [a/x/, g/]}}
  - name: audit
    prefixes: [c/, d/]
    recipients:
      - {{id: dan}}
      - {{id: erin, prefixes: [e/, a/]}}
      - {{id: frank, prefixes: [f/, b/], filters: {{include: ["**/*.txt"]}}}}
"""


def seed(s3: S3, tmp: Path) -> Path:
    """The bucket on moto and the manifest beside ``tmp``; the manifest's path."""
    s3.bucket(BUCKET, FILES)
    path = tmp / "share.yml"
    path.write_text(MANIFEST, encoding="utf-8")
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sharebatch", *args]


def start_shard(
    manifest: Path, out: Path | str, endpoint: str, run_id: str, shard: str
) -> subprocess.Popen[str]:
    """A shard as its own process (as a pod of an Indexed Job would run it)."""
    return subprocess.Popen(
        command(
            "run",
            str(manifest),
            "--out",
            str(out),
            "--endpoint-url",
            endpoint,
            "--run-id",
            run_id,
            "--shard",
            shard,
            "--workers",
            "1",
            "--quiet",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_shards(
    manifest: Path,
    out: Path,
    endpoint: str,
    run_id: str,
    count: int,
    only: tuple[int, ...] | None = None,
) -> None:
    """The shards (all ``count``, or ``only`` these) at once, each its own process; each
    must exit 0."""
    started = {
        k: start_shard(manifest, out, endpoint, run_id, f"{k}/{count}")
        for k in (range(count) if only is None else only)
    }
    for k, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (k, stderr)
        assert stdout.strip() == str(out / run_id / "shards" / f"{k}-of-{count}")


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str) -> Done:
    """The CLI in this process (a merge, or the one-machine run, needs no process of its own)."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return Done(result.exit_code, result.stdout, result.stderr)


def merge(run_dir: Path | str, *extra: str) -> Done:
    return invoke("merge", str(run_dir), "--quiet", *extra)


def one_machine(manifest: Path, out: Path, endpoint: str, run_id: str) -> Path:
    """The same manifest run by one process, for comparison."""
    done = invoke(
        "run", str(manifest), "--out", str(out), "--endpoint-url", endpoint,
        "--run-id", run_id, "--workers", "1", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out / run_id


IGNORED = ("url", "link_id", "expires_at")
"""What differs between two runs of one manifest: the signed URL, its id and its end."""


def bundles(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each bundle's rows (URLs, ids and ends aside) by ``job/recipient``."""
    found = {}
    for path in sorted(run_dir.glob("*/*/links.json")):
        rows = json.loads(path.read_text(encoding="utf-8"))["links"]
        key = f"{path.parent.parent.name}/{path.parent.name}"
        found[key] = [{k: v for k, v in row.items() if k not in IGNORED} for row in rows]
    return found


def csv_rows(run_dir: Path) -> dict[str, list[list[str]]]:
    """Each CSV bundle's (recipient, bucket, key, size) cells, header included."""
    found = {}
    for path in sorted(run_dir.glob("*/*/links.csv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        key = f"{path.parent.parent.name}/{path.parent.name}"
        found[key] = [line.split(",")[:4] for line in lines]
    return found
