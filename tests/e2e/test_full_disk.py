"""A run that crashes (a full disk, a bug) is recorded as ``failed`` and says so in one line.

The full disk is real: a 1 MiB tmpfs mounted as OUT, filled by the run's own part files and
audit log, while ``--metrics-file`` sits on another disk. Mounting needs root and a kernel that
lets this process mount (``sudo -n`` for another user); elsewhere the test skips and says why,
except in CI (``CI=true``) or with ``SHAREBATCH_REQUIRE_TMPFS=1``, where it must run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app
from sharebatch.run import folder as folder_module
from sharebatch.run import runner
from sharebatch.run.folder import LOCK_NAME, RunLock
from tests.support.prometheus import gauge, parse_exposition
from tests.support.s3 import S3, write_manifest

RECIPIENTS = ("alice", "bob", "carol")
MANIFEST = f"""\
version: 1
defaults: {{bucket: acme-reports, region: eu-west-1, expires_in: 2h}}
jobs:
  - name: reports
    prefixes: [data/]
    recipients: [{", ".join(f"{{id: {r}}}" for r in RECIPIENTS)}]
"""
# Each link costs about 5 KB of OUT (its staged JSON line and CSV row both hold the ~900-byte
# key twice, once in the URL, and audit.jsonl records the key): 300 links need 1.5 MB.
FILES = {f"data/{'k' * 880}-{i:04d}.pdf": b"x" for i in range(100)}


def _tmpfs_required() -> bool:
    return os.environ.get("CI") == "true" or bool(os.environ.get("SHAREBATCH_REQUIRE_TMPFS"))


def _as_root() -> list[str] | None:
    """The prefix that runs mount as root: none for root, ``sudo -n`` where it exists."""
    if os.geteuid() == 0:
        return []
    return ["sudo", "-n"] if shutil.which("sudo") else None


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted after the test whatever happens."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    root, reason = _as_root(), None
    if root is None:
        reason = "mounting a 1 MiB tmpfs as a full disk needs root (or sudo)"
    else:
        done = subprocess.run(
            [*root, "mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here: {done.stderr.strip()}"
    if root is None or reason is not None:
        message = (
            f"{reason}; the full-disk test did not run"
            " (it must where CI=true or SHAREBATCH_REQUIRE_TMPFS=1)"
        )
        if _tmpfs_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        umount = [*root, "umount", str(mount_point)]
        busy = subprocess.run(umount, capture_output=True, text=True, check=False)
        if busy.returncode != 0:
            # A file the run left open keeps the disk busy: detach it anyway, then say so.
            subprocess.run([*root, "umount", "--lazy", str(mount_point)], check=True)
            pytest.fail(f"the run left a file open on OUT: {busy.stderr.strip()}")


def run(s3: S3, tmp_path: Path, out: Path, run_id: str, *options: str) -> Any:
    """``sharebatch run`` of MANIFEST into ``out`` (in this process: the lock can be checked)."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    args = ["run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint]
    return CliRunner().invoke(app, [*args, "--run-id", run_id, *options], catch_exceptions=False)


def audit_events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]


@pytest.fixture
def buggy(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """One object to share, and a bug in writing the review page, after the bundles."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("no such column")

    monkeypatch.setattr(runner, "write_review", broken)


def assert_recorded_as_failed(
    result: Any, out: Path, run_id: str, prom: Path, reason: str
) -> dict[str, Any]:
    """Exit 1, one error line, no traceback, no bundle, run_finished + summary + metrics
    saying failed, and OUT's lock free again. Returns summary.json."""
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    others = []
    for line in result.stderr.splitlines():
        try:
            json.loads(line)
        except ValueError:
            others.append(line)
    assert len(others) == 1, others
    assert others[0].startswith(f"sharebatch: error: run {run_id} failed: ")
    assert reason in others[0]
    run_dir = out / run_id
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_NAME, run_id])
    assert sorted(p.name for p in run_dir.iterdir()) == ["audit.jsonl", "summary.json"]
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    assert (summary["run_id"], summary["status"]) == (run_id, "failed")
    assert reason in summary["message"]
    events = audit_events(run_dir)
    assert events[0]["event"] == "run_started"
    assert events[-1]["event"] == "run_finished"
    assert (events[-1]["status"], events[-1]["message"]) == ("failed", summary["message"])
    samples = parse_exposition(prom.read_text())
    assert gauge(samples, "sharebatch_last_run_status", status="failed") == 1
    assert gauge(samples, "sharebatch_last_run_status", status="error") == 0
    assert gauge(samples, "sharebatch_last_run_exit_code") == 1
    assert gauge(samples, "sharebatch_last_run_links_issued") == 0
    RunLock.acquire(out, "next-run").release()  # released: the next run may start
    return summary


def test_full_disk_is_a_failed_run_in_one_line(s3: S3, tmp_path: Path, full_disk: Path) -> None:
    """OUT fills up mid-run: exit 1, one line naming ENOSPC, no bundle, no staging, the lock
    released, and summary.json, run_finished and the metrics file (other disk) say failed.
    The audit log is whole: every line parses, from run_started to run_finished."""
    s3.bucket("acme-reports", FILES)
    out, prom = full_disk / "bundles", tmp_path / "sharebatch.prom"
    result = run(s3, tmp_path, out, "filled", "--metrics-file", str(prom))
    summary = assert_recorded_as_failed(result, out, "filled", prom, "No space left on device")
    assert summary["error"] == "OSError"
    assert "ENOSPC" in summary["message"]
    issued = [e for e in audit_events(out / "filled") if e["event"] == "link_issued"]
    assert issued and {e["recipient"] for e in issued} <= set(RECIPIENTS)


def test_a_bug_is_a_failed_run_in_one_line(s3: S3, tmp_path: Path, buggy: None) -> None:
    """An unexpected exception after the bundles were written: exit 1, one line naming it
    (its traceback only with --verbose), every bundle removed, failed everywhere."""
    out, prom = tmp_path / "out", tmp_path / "sharebatch.prom"
    result = run(s3, tmp_path, out, "buggy", "--metrics-file", str(prom))
    summary = assert_recorded_as_failed(result, out, "buggy", prom, "KeyError: 'no such column'")
    assert summary["error"] == "KeyError"
    events = audit_events(out / "buggy")
    discarded = {Path(e["path"]).name for e in events if e["event"] == "bundle_discarded"}
    assert discarded == {"reports"}


def test_an_io_error_on_the_summary_is_still_a_recorded_failure(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO writing summary.json, again while recording the failure: the bundles are removed,
    the audit log says which record is missing and that the run failed; exit 1, one line."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})

    def broken_disk(dest: Path, data: object) -> str:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(runner, "write_json", broken_disk)
    out, prom = tmp_path / "out", tmp_path / "sharebatch.prom"
    result = run(s3, tmp_path, out, "eio", "--metrics-file", str(prom))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "sharebatch: error: run eio failed: Input/output error (EIO); no bundle kept"
    )
    assert [p.name for p in (out / "eio").iterdir()] == ["audit.jsonl"]  # bundles, page gone
    events = audit_events(out / "eio")
    incomplete = [e for e in events if e["event"] == "abort_incomplete"]
    assert [(e["step"], Path(e["path"]).name) for e in incomplete] == [("summary", "summary.json")]
    assert (events[-1]["event"], events[-1]["status"]) == ("run_finished", "failed")
    assert gauge(parse_exposition(prom.read_text()), "sharebatch_last_run_status", status="failed")


def test_a_bug_shows_its_traceback_with_verbose(s3: S3, tmp_path: Path, buggy: None) -> None:
    """--verbose adds the crash's traceback (for a bug report) above the one error line."""
    result = run(s3, tmp_path, tmp_path / "out", "buggy", "-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "in broken" in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last == "sharebatch: error: run buggy failed: KeyError: 'no such column'; no bundle kept"


def test_audit_lines_refused_by_a_full_disk_are_written_once_there_is_room(
    full_disk: Path,
) -> None:
    """The audit log keeps what a full disk refused and writes it once space is freed: every
    event logged is there once, each line whole (no line cut, none spliced into another)."""
    filler = full_disk / "filler"
    logged: list[int] = []
    with audit.audit_file(full_disk / "audit.jsonl"):
        log = audit.get_logger()
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            handle.write(b"f" * (1 << 21))  # more than the disk: it is full
        assert _log_until_refused(log, logged).errno == errno.ENOSPC
        filler.unlink()
        log.info("step", n=len(logged))
        logged.append(len(logged))
    lines = (full_disk / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == logged


def _log_until_refused(log: Any, logged: list[int]) -> OSError:
    for n in range(100_000):
        logged.append(n)  # logged, though it may not be written yet
        try:
            log.info("step", n=n, padding="p" * 300)
        except OSError as refused:
            return refused
    raise AssertionError("the disk never refused the audit log")


def test_an_audit_log_the_disk_refuses_to_create_still_ends_as_a_recorded_failure(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC creating audit.jsonl (the first file of the run folder): exit 1 in one line,
    staging removed, summary.json saying failed, the lock released, as for any crash."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})

    @contextlib.contextmanager
    def full(path: Path) -> Iterator[None]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield  # pragma: no cover

    monkeypatch.setattr(runner, "audit_file", full)
    out = tmp_path / "out"
    result = run(s3, tmp_path, out, "nospace")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "sharebatch: error: run nospace failed: No space left on device (ENOSPC)"
    )
    assert [p.name for p in (out / "nospace").iterdir()] == ["summary.json"]
    summary = json.loads((out / "nospace" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", "OSError")
    RunLock.acquire(out, "next-run").release()


def test_a_full_disk_making_the_run_folder_is_a_crash_not_bad_input(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC making the run folder's staging is a full disk, not an invalid command line:
    exit 1 naming ENOSPC (not 2), the metrics file says failed, and the lock is free."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})

    def full(path: Path) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder_module, "private_dir", full)
    out, prom = tmp_path / "out", tmp_path / "sharebatch.prom"
    out.mkdir()
    result = run(s3, tmp_path, out, "nospace", "--metrics-file", str(prom))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "sharebatch: error: run nospace failed: No space left on device (ENOSPC)"
    )
    assert gauge(parse_exposition(prom.read_text()), "sharebatch_last_run_status", status="failed")
    assert not (out / "nospace").exists()  # the half-made run folder is not kept
    RunLock.acquire(out, "next-run").release()


def test_a_verbose_traceback_shows_outsider_text_escaped(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug whose message quotes an object key (a terminal escape, a bidi override in it):
    --verbose's traceback shows it through ``visible``, as every other error line does."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})
    key = "data/\x1b]0;pwned\x07\u202eevil.pdf"

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError(f"no column for {key}")

    monkeypatch.setattr(runner, "write_review", broken)
    result = run(s3, tmp_path, tmp_path / "out", "buggy", "-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert "\\x1b]0;pwned\\x07\\u202eevil.pdf" in result.stderr


def test_a_verbose_traceback_never_shows_a_signature(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug whose message quotes a link (a row, say): --verbose's traceback redacts it, as
    the one error line does; no signature reaches stderr."""
    s3.bucket("acme-reports", {"data/a.pdf": b"a"})
    url = "http://127.0.0.1/acme-reports/data/a.pdf?X-Amz-Signature=" + "ab" * 32

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError(f"cannot show row {url}")

    monkeypatch.setattr(runner, "write_review", broken)
    result = run(s3, tmp_path, tmp_path / "out", "buggy", "-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ab" * 32 not in result.stderr
