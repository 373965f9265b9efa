"""What an operator sees of a run: live progress on a terminal, the summary table, summary.json.

Terminal behaviour is tested for real: the CLI runs as a subprocess whose stderr is a
pseudo-terminal, and the same run under "cron" has pipes only.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sharebatch import Connection, run_manifest
from sharebatch.cli.view import summary_table
from sharebatch.run.progress import JobProgress
from tests.support.linkkit import drain
from tests.support.s3 import S3, SECRET_KEY, fresh_s3, write_manifest

MANIFEST = """\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
        prefixes: [partners/globex/]
      - id: initech
  - name: bulk
    expires_in: 30m
    prefixes: [big/, reports/q3/]
    recipients:
      - id: archive
  - name: broken
    bucket: missing-bucket
    prefixes: [x/]
    recipients:
      - id: nobody
"""


def files() -> dict[str, bytes]:
    found = {f"big/part-{i:04d}.bin": b"x" * (i + 1) for i in range(1001)}  # two pages
    found.update(
        {
            "reports/q3/summary.pdf": b"%PDF summary",
            "reports/q3/data.csv": b"a,b\n1,2\n",
            "partners/globex/statement.csv": b"globex,1\n",
        }
    )
    return found


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def on_terminal(args: list[str], columns: int = 160) -> tuple[int, str, str]:
    """Run ``python -m sharebatch ARGS`` with stderr on a pseudo-terminal, stdout on a pipe.

    Returns the exit code, stdout, and what the terminal received with escape codes removed.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "sharebatch", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    received = drain(master, quiet_for=120)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.stdout.close()
    code = process.wait()
    return code, stdout, ANSI.sub("", received.decode("utf-8", "replace"))


def in_pipes(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The same run as cron starts it: no terminal anywhere."""
    return subprocess.run(
        [sys.executable, "-m", "sharebatch", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def summary_of(stdout: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(stdout.strip()) / "summary.json").read_text())
    return data


@pytest.fixture(scope="module")
def bucket(moto_endpoint: str) -> Iterator[S3]:
    """Seeded once for the module (1,001 objects, straight into moto); no test resets S3."""
    with fresh_s3(moto_endpoint) as s3:
        s3.bucket("acme-reports", files(), over_http=False)
        yield s3


@pytest.fixture
def seeded(bucket: S3, credentials: None, tmp_path: Path) -> tuple[S3, Path]:
    return bucket, write_manifest(tmp_path / "m.yml", MANIFEST)


def test_library_reports_progress_per_job(seeded: tuple[S3, Path], tmp_path: Path) -> None:
    """run_manifest's on_progress sees, per job, prefixes, objects and links rise to the totals."""
    s3, manifest = seeded
    seen: list[JobProgress] = []
    summary = run_manifest(
        manifest,
        out=tmp_path / "out",
        connection=Connection(endpoint_url=s3.endpoint),
        on_progress=seen.append,
    )
    report: dict[str, Any] = dict(summary.report)
    assert [p.job for p in seen[:3]] == ["q3", "bulk", "broken"]  # announced before listing
    assert all(p.prefixes_done == 0 and p.links_signed == 0 for p in seen[:3])
    final = {p.job: p for p in seen}
    listed = {p["prefix"]: p["objects"] for p in report["prefixes"]}
    jobs = {j["name"]: j for j in report["jobs"]}
    assert final["q3"] == JobProgress(
        "q3",
        prefixes=2,
        prefixes_done=2,
        objects_listed=listed["reports/q3/"] + listed["partners/globex/"],
        links_signed=jobs["q3"]["links"],
    )
    bulk = [k for k in files() if k.startswith(("big/", "reports/q3/"))]
    assert final["bulk"] == JobProgress("bulk", 2, 2, 0, len(bulk), len(bulk))
    assert final["broken"] == JobProgress("broken", 1, 1, 1, 0, 0)
    for job in final:  # counters only ever grow
        states = [p for p in seen if p.job == job]
        for before, after in itertools.pairwise(states):
            assert after.objects_listed >= before.objects_listed
            assert after.links_signed >= before.links_signed


def test_summary_json_has_the_table_figures(seeded: tuple[S3, Path], tmp_path: Path) -> None:
    """summary.json holds jobs, recipients, links, bytes shared, earliest expiry, failures."""
    s3, manifest = seeded
    summary = run_manifest(
        manifest, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
    )
    report = json.loads((Path(str(summary.run_dir)) / "summary.json").read_text())
    content = files()
    q3 = [k for k in content if k.startswith(("reports/q3/", "partners/globex/"))]
    bulk = [k for k in content if k.startswith(("big/", "reports/q3/"))]
    jobs = {j["name"]: j for j in report["jobs"]}
    expected_q3 = sum(len(content[k]) for k in q3) + sum(
        len(content[k]) for k in content if k.startswith("reports/q3/")
    )
    assert (jobs["q3"]["links"], jobs["q3"]["bytes"]) == (5, expected_q3)
    assert jobs["bulk"]["bytes"] == sum(len(content[k]) for k in bulk)
    assert (jobs["broken"]["links"], jobs["broken"]["failures"]) == (0, 1)
    headers = [
        json.loads(p.read_text())["header"] for p in Path(str(summary.run_dir)).rglob("links.json")
    ]
    assert jobs["bulk"]["earliest_expiry"] == min(
        h["expires_at"] for h in headers if h["job"] == "bulk"
    )
    totals = report["totals"]
    assert totals["bytes"] == expected_q3 + jobs["bulk"]["bytes"]
    assert totals["earliest_expiry"] == min(h["expires_at"] for h in headers)
    assert totals["earliest_expiry"] == jobs["bulk"]["earliest_expiry"]  # 30 min beats 72 h
    assert (totals["jobs"], totals["recipients"], totals["failures"]) == (3, 4, 1)
    assert jobs["broken"]["earliest_expiry"] is None


def test_summary_table_shows_each_job_and_the_totals(
    seeded: tuple[S3, Path], tmp_path: Path
) -> None:
    """The table has one row per job and a total row, with the summary's own figures."""
    s3, manifest = seeded
    report: dict[str, Any] = dict(
        run_manifest(
            manifest, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
        ).report
    )
    out = io.StringIO()
    Console(file=out, width=160).print(summary_table(report))
    rows = [
        [cell.strip() for cell in line.strip("│┃ ").split("│")]
        for line in out.getvalue().splitlines()
        if line.startswith("│")
    ]
    by_job = {row[0]: row for row in rows}
    for job in report["jobs"]:
        row = by_job[job["name"]]
        assert row[1:3] == [str(len(job["recipients"])), str(job["links"])]
        assert row[4:] == [job["earliest_expiry"] or "-", str(job["failures"])]
    totals = report["totals"]
    assert by_job["3 jobs"][1:3] == [str(totals["recipients"]), str(totals["links"])]
    assert by_job["3 jobs"][4:] == [totals["earliest_expiry"], "1"]
    assert "partial" in out.getvalue().splitlines()[0]


def test_terminal_shows_live_progress_and_the_summary_table(
    seeded: tuple[S3, Path], tmp_path: Path
) -> None:
    """On a terminal, stderr shows per-job progress and ends with the summary table."""
    s3, manifest = seeded
    code, stdout, terminal = on_terminal(
        ["run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    )
    assert code == 1  # the broken job
    report = summary_of(stdout)
    jobs = {j["name"]: j for j in report["jobs"]}
    listed = {p["prefix"]: p["objects"] for p in report["prefixes"]}
    # The display's last state, per job: every prefix done, every object and link counted.
    bulk = listed["big/"] + listed["reports/q3/"]
    # " +": Rich pads the columns of every row to the widest number shown at that moment.
    assert re.search(
        rf"bulk .*2/2 prefixes +{bulk} objects listed +{jobs['bulk']['links']} links signed",
        terminal,
    )
    assert re.search(r"broken .*1/1 prefix +0 objects listed +0 links signed", terminal)
    assert re.search(r"info +run_finished", terminal)  # log lines print above the display
    header = next(line for line in terminal.splitlines() if "earliest expiry" in line)
    assert header.split() == ["┃", "job", "┃", "recipients", "┃", "links", "┃", "shared", "┃",
                              "earliest", "expiry", "┃", "failures", "┃"]  # fmt: skip
    total = next(line for line in terminal.splitlines() if "3 jobs" in line)
    assert total.split("│")[3].strip() == str(report["totals"]["links"])
    assert "X-Amz-Signature" not in terminal and SECRET_KEY not in terminal


def test_cron_gets_log_lines_only(seeded: tuple[S3, Path], tmp_path: Path) -> None:
    """Without a terminal, stderr is JSON log lines and nothing else: no progress, no table."""
    s3, manifest = seeded
    result = in_pipes(
        ["run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    )
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[-1]["event"] == "run_finished"
    totals = summary_of(result.stdout)["totals"]
    assert events[-1]["links"] == totals["links"]
    assert events[-1]["earliest_expiry"] == totals["earliest_expiry"]
    assert events[-1]["bytes"] == totals["bytes"]


def test_console_format_into_a_file_is_log_lines_only(
    seeded: tuple[S3, Path], tmp_path: Path
) -> None:
    """--log-format console with stderr in a file: console log lines, no table, no progress."""
    s3, manifest = seeded
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-m", "sharebatch", "run", str(manifest), "--log-format", "console",
             "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
            check=False,
        )  # fmt: skip
    assert done.returncode == 1  # the broken job
    lines = log.read_text().splitlines()
    console = re.compile(r"\d\d:\d\d:\d\d (debug|info|warning|error) +[a-z_]+( |$)")
    assert [line for line in lines if not console.match(line)] == []
    assert re.match(r"\d\d:\d\d:\d\d info +run_finished .*status=partial", lines[-1])
    assert Path(done.stdout.strip()).is_dir()


def test_quiet_terminal_shows_only_warnings(seeded: tuple[S3, Path], tmp_path: Path) -> None:
    """--quiet on a terminal: no progress display, no table; warnings and errors still show."""
    s3, manifest = seeded
    code, stdout, terminal = on_terminal(
        ["run", str(manifest), "-q", "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    )
    assert code == 1
    assert "links signed" not in terminal and "earliest expiry" not in terminal
    lines = [line for line in terminal.splitlines() if line.strip()]
    assert lines and all(re.match(r"\d\d:\d\d:\d\d (warning|error) ", ln) for ln in lines)
    assert any("prefix_failed" in line and "missing-bucket" in line for line in lines)
    assert Path(stdout.strip()).is_dir()


def test_verbose_terminal_logs_each_link_above_the_display(
    seeded: tuple[S3, Path], tmp_path: Path
) -> None:
    """--verbose on a terminal: a link_issued line per link (never the URL), and progress."""
    s3, _ = seeded
    manifest = write_manifest(
        tmp_path / "m.yml",
        MANIFEST.split("  - name: bulk")[0].replace("        prefixes: [partners/globex/]\n", ""),
    )
    code, _, terminal = on_terminal(
        ["run", str(manifest), "-v", "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    )
    assert code == 0
    assert len(re.findall(r"debug +link_issued", terminal)) == 4  # 2 objects, 2 recipients
    assert terminal.count("url_sha256=") == 4 and "X-Amz-" not in terminal
    assert re.search(r"q3 .*1/1 prefix  2 objects listed 4 links signed", terminal)
