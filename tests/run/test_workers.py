"""Signing workers (``--workers N``): the same run as one process, byte for byte; stopped
cleanly by a signal; failed cleanly when a worker dies.

Runs are real processes of ``tests/support/synthetic_run.py`` (every stage real but the
listing, whose pages have random sizes), under libfaketime's stopped wall clock where two runs
are compared, as the golden run is.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.models import ObjectRef
from sharebatch.run import pool, worker
from sharebatch.run.worker import BOOT, pack, spool_path, unpack
from tests.support import frozen, secretsguard, synthetic_run
from tests.support.paths import ROOT
from tests.support.procs import gone

secretsguard.KNOWN_SECRETS.update({synthetic_run.SECRET_KEY, synthetic_run.SESSION_TOKEN})

_DURATION = re.compile(r'("(?:duration_)?seconds": )[0-9.e+-]+')
_RUN = "tests.support.synthetic_run"


def _frozen_run(out: Path, workers: int | str, seed: int, *extra: str) -> Path:
    done = frozen.run(_RUN, out, str(workers), str(seed), *extra, timeout=300)
    # max_links is exceeded on purpose: the capped job fails, the run is partial (exit 1).
    assert done.returncode == 1, done.stderr
    return out / "bundles" / synthetic_run.RUN_ID


def _files(run: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(run.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name in ("summary.json", "audit.jsonl"):
                data = _DURATION.sub(r"\g<1>0", data.decode()).encode()
            found[str(path.relative_to(run))] = data
    return found


@pytest.mark.own_clock
@pytest.mark.parametrize(("workers", "seed"), [(2, 1), (2, 2), (3, 3)])
def test_workers_write_what_one_process_writes(tmp_path: Path, workers: int, seed: int) -> None:
    """Every file of a run (bundles, summary, review page, audit log with its order) is the
    same byte for byte with N workers as with one process, pages of random sizes, a route
    past max_links, keys no link can reach, a route without link ids."""
    one = _files(_frozen_run(tmp_path / "one", 1, seed))
    many = _files(_frozen_run(tmp_path / "many", workers, seed))
    assert (tmp_path / "many" / "workers.txt").read_text() == str(workers)
    assert sorted(many) == sorted(one)
    for name, data in one.items():
        assert many[name] == data, f"{name} differs with {workers} workers"
    events = [json.loads(line) for line in one["audit.jsonl"].splitlines()]
    assert {"max_links_exceeded", "key_unlinkable", "link_issued"} <= {e["event"] for e in events}
    summary = json.loads(one["summary.json"])
    assert summary["status"] == "partial"


@pytest.mark.own_clock
def test_workers_started_mid_run_by_default(tmp_path: Path) -> None:
    """With ``workers`` left to the run, the pool starts once AUTO_AFTER objects were listed
    (here 300, mid-listing, on a machine of 2 cores or more): pages before are signed in the
    run's process, pages after by workers, and every file is still a one-process run's."""
    one = _files(_frozen_run(tmp_path / "one", 1, 6))
    auto = _files(_frozen_run(tmp_path / "auto", "auto", 6, "--auto-after", "300"))
    assert (tmp_path / "one" / "workers.txt").read_text() == "0"
    started = int((tmp_path / "auto" / "workers.txt").read_text())
    assert started == (len(os.sched_getaffinity(0)) if len(os.sched_getaffinity(0)) > 1 else 0)
    assert sorted(auto) == sorted(one)
    for name, data in one.items():
        assert auto[name] == data, f"{name} differs when workers start mid-run"


def _by_listing(audit: bytes) -> dict[str, list[bytes]]:
    lines: dict[str, list[bytes]] = defaultdict(list)
    for line in audit.splitlines():
        event = json.loads(line)
        prefix = event.get("prefix") or str(event.get("key", "")).partition("/")[0]
        lines[prefix].append(line)
    return lines


@pytest.mark.own_clock
def test_workers_across_listings(tmp_path: Path) -> None:
    """Three listings: bundles and summary the same byte for byte with 2 workers, and each
    listing's audit lines in the same order (between listings the scheduler decides, in a
    one-process run too)."""
    one = _files(_frozen_run(tmp_path / "one", 1, 5, "--three"))
    many = _files(_frozen_run(tmp_path / "many", 2, 5, "--three"))
    assert sorted(many) == sorted(one)
    for name, data in one.items():
        if name != "audit.jsonl":
            assert many[name] == data, f"{name} differs with 2 workers"
    assert sorted(one["audit.jsonl"].splitlines()) == sorted(many["audit.jsonl"].splitlines())
    assert _by_listing(one["audit.jsonl"]) == _by_listing(many["audit.jsonl"])
    assert {"data", "more", "last"} <= set(_by_listing(one["audit.jsonl"]))


@pytest.mark.own_clock
def test_workers_spooling_in_small_segments(tmp_path: Path) -> None:
    """Spool segments of 4 KiB (a new one at nearly every page, each removed once its pages
    were copied): every file is still a one-process run's byte for byte, and no spool file is
    left behind."""
    one = _files(_frozen_run(tmp_path / "one", 1, 11))
    many = _files(_frozen_run(tmp_path / "many", 2, 11, "--segment", "4096"))
    assert sorted(many) == sorted(one)
    for name, data in one.items():
        assert many[name] == data, f"{name} differs with 4 KiB spool segments"
    assert not [name for name in many if "spool" in name]


def test_a_spool_segment_is_private_and_goes_once_its_pages_were_copied(tmp_path: Path) -> None:
    """A worker's spool files are 0600 (presigned URLs) and a segment starts once the last
    one is full; the run removes a segment when the worker has moved on and every page in it
    was copied or dropped, not before."""
    spool = worker._Spool(tmp_path, 3, segment=10)
    assert spool.write([b"x" * 5, b"", b"x" * 7]) == (0, 0)
    assert spool.write([b"y" * 4]) == (1, 0)
    assert spool.write([b"z", b"z"]) == (1, 4)
    assert spool.write([]) == (1, 6)
    first, second = spool_path(tmp_path, 3, 0), spool_path(tmp_path, 3, 1)
    assert first.read_bytes() == b"x" * 12
    assert second.read_bytes() == b"y" * 4 + b"z" * 2
    assert {oct(path.stat().st_mode & 0o777) for path in (first, second)} == {"0o600"}
    held = pool._Worker(cast(Any, None), 3, tmp_path)
    segment = held.segment(0)
    segment.users += 2  # two pages in it, not copied yet
    assert held.segment(0) is segment
    later = held.segment(1)
    later.users += 1
    segment.release()
    assert first.exists()  # one page of it still to copy
    segment.release()
    assert not first.exists()
    later.release()
    assert second.exists()  # the worker may still write to it: the pool's close removes it
    held.close()


@pytest.mark.own_clock
def test_a_failed_listing_with_workers(tmp_path: Path) -> None:
    """A prefix whose listing breaks off mid-way, its pages already out at workers: that
    prefix's routes fail and the others go on, as in one process (same bundles, summary)."""
    one = _files(_frozen_run(tmp_path / "one", 1, 8, "--three", "--fail", "more/"))
    many = _files(_frozen_run(tmp_path / "many", 2, 8, "--three", "--fail", "more/"))
    assert sorted(many) == sorted(one)
    for name, data in one.items():
        if name != "audit.jsonl":
            assert many[name] == data, f"{name} differs with 2 workers"
    assert _by_listing(one["audit.jsonl"]) == _by_listing(many["audit.jsonl"])
    summary = json.loads(one["summary.json"])
    assert [f["prefix"] for f in summary["failures"] if f["kind"] == "prefix"] == ["more/"]
    assert any(name.endswith("links.json") for name in one)


@pytest.mark.own_clock
def test_workers_clamp_links_to_short_credentials(tmp_path: Path) -> None:
    """Temporary credentials ending before the links would: the workers clamp every link and
    the run's headers say so (``clamped_to``), as one process does, byte for byte."""
    one = _files(_frozen_run(tmp_path / "one", 1, 10, "--short"))
    many = _files(_frozen_run(tmp_path / "many", 2, 10, "--short"))
    assert sorted(many) == sorted(one)
    for name, data in one.items():
        assert many[name] == data, f"{name} differs with 2 workers"
    header = json.loads(one["everyone/all/links.json"])
    assert header["header"]["clamped_to"] == "2026-11-28T13:00:00Z"


@pytest.mark.own_clock
def test_workers_stand_aside_where_botocore_signs(tmp_path: Path) -> None:
    """A setting that makes botocore sign (the fast signer refuses it) leaves no work for
    workers: the run signs in its own process, says why (``workers_unused``), and writes
    what a one-process run writes."""
    one = _files(_frozen_run(tmp_path / "one", 1, 9, "--botocore"))
    many = _files(_frozen_run(tmp_path / "many", 2, 9, "--botocore"))
    assert (tmp_path / "many" / "workers.txt").read_text() == "0"
    unused = [
        json.loads(line) for line in many["audit.jsonl"].splitlines() if b'"workers_unused"' in line
    ]
    assert [(e["workers"], e["reason"]) for e in unused] == [
        (2, f"bucket {synthetic_run.BUCKET}: botocore signs it")
    ]
    for name, data in one.items():
        if name != "audit.jsonl":
            assert many[name] == data, f"{name} differs"


def test_a_worker_imports_no_aws_sdk_nor_manifest_loader() -> None:
    """A worker imports the signer and the staging, not boto, pydantic or structlog: it
    stays small (the memory bench sums every worker's peak)."""
    program = BOOT.replace("serve()\n", "print(' '.join(sorted(sys.modules)))\n")
    folder = str(ROOT / "sharebatch")
    done = subprocess.run(
        [sys.executable, "-c", program, folder],
        capture_output=True,
        text=True,
        check=True,
    )
    roots = {name.partition(".")[0] for name in done.stdout.split()}
    assert "sharebatch" in roots
    heavy = {"boto3", "botocore", "aioboto3", "aiobotocore", "aiohttp", "pydantic", "structlog"}
    assert not roots & heavy


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _held(out: Path, workers: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", _RUN, str(out), str(workers), "4", "--hold", "3"],
        cwd=ROOT,
        # Started clean of an outer libfaketime, as the frozen runs are.
        env=frozen.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    return process


def _nothing_complete(run: Path) -> None:
    assert not list(run.rglob("links.json"))
    assert not list(run.rglob("links.csv"))
    assert not (run / ".staging").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_and_its_workers(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM or SIGINT to a run with 2 workers mid-listing: exit 143/130, summary
    'interrupted', no bundle or staging file left, and both workers ended with it."""
    process = _held(tmp_path, 2)
    workers = _children(process.pid)
    assert len(workers) == 2
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    run = tmp_path / "bundles" / synthetic_run.RUN_ID
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    _nothing_complete(run)
    assert all(gone(pid) for pid in workers)


def test_a_worker_killed_fails_the_run(tmp_path: Path) -> None:
    """SIGKILL to one worker while the listing waits: the run fails at once (exit 1, summary
    'failed' naming the worker), no bundle that looks complete, the other worker ended."""
    process = _held(tmp_path, 2)
    first, second = _children(process.pid)
    os.kill(first, signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    run = tmp_path / "bundles" / synthetic_run.RUN_ID
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert f"signing worker {first} ended (signal SIGKILL)" in json.dumps(summary)
    _nothing_complete(run)
    assert gone(second)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=40),
            st.integers(min_value=0, max_value=5 * 2**40),
            st.text(max_size=40),
            st.datetimes(
                min_value=datetime(1970, 1, 1),
                max_value=datetime(2999, 12, 31),
                timezones=st.just(UTC),
            ),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_objects_cross_the_pipe_unchanged(
    rows: list[tuple[str, int, str, datetime]], mixed: bool
) -> None:
    """A page's objects packed for a worker come back equal field for field, to the
    microsecond and with UTC itself as their zone (a row's last_modified is written from it);
    objects of two buckets, or another zone, travel as they are."""
    objects = [ObjectRef("b", key, size, etag, moment) for key, size, etag, moment in rows]
    if mixed and objects:
        objects[-1] = objects[-1]._replace(bucket="other")
    back = unpack(pickle.loads(pickle.dumps(pack(objects))))  # noqa: S301 - our own bytes
    assert back == objects
    assert all(o.last_modified.tzinfo is UTC for o in back)


def test_a_short_spool_write_is_completed_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's pieces that the kernel wrote only in part (``pwritev`` may stop short) are
    completed at their offsets: the segment holds the page whole, the next page after it."""
    real = os.pwritev

    def short(fd: int, pieces: list[bytes], offset: int) -> int:
        return real(fd, [b"".join(pieces)[:3]], offset)

    spool = worker._Spool(tmp_path, 0, segment=1 << 20)
    monkeypatch.setattr(os, "pwritev", short)
    assert spool.write([b"abcd", b"efgh"]) == (0, 0)
    monkeypatch.setattr(os, "pwritev", real)
    assert spool.write([b"ij"]) == (0, 8)
    assert spool_path(tmp_path, 0, 0).read_bytes() == b"abcdefghij"
