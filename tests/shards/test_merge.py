"""Shards as separate processes on one moto, merged: the run one machine would have made."""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sharebatch.run import runner
from tests.support.faultproxy import fault_proxy
from tests.support.inventory import rows_of, write_inventory
from tests.support.s3 import S3
from tests.support.shards import (
    BUCKET,
    bundles,
    command,
    csv_rows,
    invoke,
    merge,
    one_machine,
    run_shards,
    seed,
    start_shard,
)

_A = ["a/1.txt", "a/2.csv", "a/x/3.txt", "a/x/4.txt", "a/y/5.txt", "a/z/6.csv", "a/zz.txt"]
EXPECTED = {
    "audit/dan": ["c/1.txt", "c/2.csv", "d/1.txt"],
    "audit/erin": [
        "c/1.txt",
        "c/2.csv",
        "d/1.txt",
        "e/1.txt",
        "e/2.txt",
        'e/a, "quoted" one.txt',
        *_A,
    ],
    "audit/frank": ["c/1.txt", "d/1.txt", "f/1.txt", "b/1.txt", "b/2.txt"],
    "partners/alice": [*_A, "b/1.txt", "b/2.txt"],
    "partners/bob": [*_A, "b/1.txt", "b/2.txt", "c/1.txt", "c/2.csv"],
    "partners/carol": [*_A, "b/1.txt", "b/2.txt", "g/1.txt"],
}
"""Each bundle's keys in order, as one machine lists them (checked against one in
``test_merged_shards_equal_one_machine``)."""


def _keys(run_dir: Path) -> dict[str, list[str]]:
    return {name: [row["key"] for row in rows] for name, rows in bundles(run_dir).items()}


def _digests(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.glob("*/*/links.*"))
    }


def test_merged_shards_equal_one_machine(s3: S3, tmp_path: Path) -> None:
    """1, 3 and 7 shards, then merge: every bundle has one machine's rows in its order
    (URLs, link ids and ends aside), the summary its counts, the audit log every shard's
    events in time order, each naming its shard."""
    manifest = seed(s3, tmp_path)
    solo = one_machine(manifest, tmp_path / "solo", s3.endpoint, "solo")
    assert _keys(solo) == EXPECTED
    theirs = json.loads((solo / "summary.json").read_text())
    out = tmp_path / "out"
    for count in (1, 3, 7):
        run_id = f"job-{count}"
        run_shards(manifest, out, s3.endpoint, run_id, count)
        metrics = tmp_path / f"{run_id}.prom"
        merged = merge(out / run_id, "--metrics-file", str(metrics))
        assert merged.returncode == 0, merged.stderr
        assert merged.stdout.strip() == str(out / run_id)
        assert re.search(r'status="ok"} 1(\.0)?\n', metrics.read_text())
        run_dir = out / run_id
        assert bundles(run_dir) == bundles(solo)
        assert csv_rows(run_dir) == csv_rows(solo)
        ours = json.loads((run_dir / "summary.json").read_text())
        assert ours["status"] == "ok"
        assert ours["manifest"] == theirs["manifest"]
        unstamped = {"earliest_expiry": None}
        assert ours["totals"] | unstamped == theirs["totals"] | unstamped
        assert [p["prefix"] for p in ours["prefixes"]] == [p["prefix"] for p in theirs["prefixes"]]
        events = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
        from_shards = [e for e in events if "shard" in e]
        assert {e["shard"] for e in from_shards} == {f"{k}-of-{count}" for k in range(count)}
        stamps = [e["timestamp"] for e in from_shards]
        assert stamps == sorted(stamps)
        assert [e["event"] for e in events].count("bundle_written") == 12
        assert events[-1]["event"] == "run_finished"
        assert (run_dir / "index.html").is_file()
        assert not (run_dir / ".staging").exists()
    checked = invoke("verify", str(out / "job-7" / "audit" / "erin"), "--json")
    assert checked.returncode == 0, checked.stderr


_SDK_PROBE = """
import sys
from sharebatch.cli import app
try:
    app(["merge", sys.argv[1], "--quiet"], prog_name="sharebatch")
except SystemExit as done:
    code = done.code
sdk = ("aioboto3", "aiobotocore", "aiohttp", "boto3", "botocore")
print("exit", code, "sdk", sorted({m.split(".")[0] for m in sys.modules} & set(sdk)))
"""


def test_a_merge_without_slots_or_pages_imports_no_aws_sdk(s3: S3, tmp_path: Path) -> None:
    """A merge signs only upload slots and page links: without them it reaches no S3 and
    imports no AWS SDK (~0.6 s of CPU of every merge), yet writes the same bundles."""
    manifest = seed(s3, tmp_path)
    run_shards(manifest, tmp_path / "out", s3.endpoint, "job-1", 2)
    probe = subprocess.run(
        [sys.executable, "-c", _SDK_PROBE, str(tmp_path / "out" / "job-1")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.splitlines()[-1] == "exit 0 sdk []"
    assert _keys(tmp_path / "out" / "job-1") == EXPECTED


def test_merge_is_idempotent_and_two_at_once_agree(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge that breaks off (a full disk at the review page) leaves no bundle and no
    summary. Two merges at once (processes): one merges, the other exits 75 (OUT's lock) or
    finds the work done; a merge after that finds it done (exit 0) and rewrites nothing."""
    manifest = seed(s3, tmp_path)
    out = tmp_path / "out"
    run_shards(manifest, out, s3.endpoint, "job-2", 2)
    with monkeypatch.context() as patched:

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        # The merge's write stage is the runner's (runner.write_outputs).
        patched.setattr(runner, "write_review", full)
        broken = merge(out / "job-2")
    assert broken.returncode == 1
    assert "No space left on device" in broken.stderr
    left = sorted(p.name for p in (out / "job-2").iterdir())
    assert left == ["audit.jsonl", "shards"]
    both = [
        subprocess.Popen(
            command("merge", str(out / "job-2"), "--quiet"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in both:
        process.communicate(timeout=120)
    assert sorted(p.returncode for p in both) in ([0, 0], [0, 75])
    assert _keys(out / "job-2") == EXPECTED
    written = _digests(out / "job-2")
    summary = (out / "job-2" / "summary.json").read_bytes()
    again = merge(out / "job-2")
    assert again.returncode == 0, again.stderr
    assert _digests(out / "job-2") == written
    assert (out / "job-2" / "summary.json").read_bytes() == summary


def test_merge_with_shards_missing_names_them_and_writes_nothing(s3: S3, tmp_path: Path) -> None:
    """Only shard 2 of 3 ran: exit 1 naming 0-of-3 and 1-of-3; nothing written."""
    manifest = seed(s3, tmp_path)
    out = tmp_path / "out"
    run_shards(manifest, out, s3.endpoint, "job-3", 3, only=(2,))
    merged = merge(out / "job-3")
    assert merged.returncode == 1
    assert "0-of-3, 1-of-3" in merged.stderr and "2-of-3" not in merged.stderr
    assert sorted(p.name for p in (out / "job-3").iterdir()) == ["shards"]


def test_a_killed_shard_is_run_again(s3: S3, tmp_path: Path) -> None:
    """A second copy of a shard while it runs exits 75. A shard killed with SIGKILL
    mid-listing leaves nothing a merge takes for a shard (the merge names it missing); run
    again with the same K and run id, it replaces its output and the merge has one
    machine's rows."""
    manifest = seed(s3, tmp_path)
    out = tmp_path / "out"
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("hold", "a/", times=None)
        held = start_shard(manifest, out, proxy.url, "job-k", "0/1")
        assert proxy.held.wait(60)
        twice = start_shard(manifest, out, proxy.url, "job-k", "0/1")
        _, stderr = twice.communicate(timeout=60)
        assert twice.returncode == 75, stderr
        held.send_signal(signal.SIGKILL)
        held.communicate(timeout=60)
        assert held.returncode == -signal.SIGKILL
    shards = out / "job-k" / "shards"
    assert not (shards / "0-of-1").exists()
    missing = merge(out / "job-k")
    assert missing.returncode == 1 and "0-of-1" in missing.stderr
    run_shards(manifest, out, s3.endpoint, "job-k", 1)
    assert [p.name for p in shards.iterdir() if not p.name.endswith(".lock")] == ["0-of-1"]
    merged = merge(out / "job-k")
    assert merged.returncode == 0, merged.stderr
    assert _keys(out / "job-k") == EXPECTED


def test_a_failed_prefix_fails_the_merge_until_its_shard_is_run_again(
    s3: S3, tmp_path: Path
) -> None:
    """S3 refuses d/ to every shard: the shard that lists it exits 1 naming it, the merge
    exits 1 with that failure in its summary and no bundle for the routes it feeds; that
    shard run again (same K, same run id) replaces its output and the next merge is ok."""
    manifest = seed(s3, tmp_path)
    out = tmp_path / "out"
    with fault_proxy(s3.endpoint) as proxy:
        denied = proxy.add("denied", "d/", times=None)
        started = {k: start_shard(manifest, out, proxy.url, "job-f", f"{k}/3") for k in range(3)}
        codes = {}
        for k, process in started.items():
            _, stderr = process.communicate(timeout=120)
            codes[k] = process.returncode
            if process.returncode:
                assert "'d/'" in stderr and "AccessDenied" in stderr
        assert sorted(codes.values()) == [0, 0, 1]
        merged = merge(out / "job-f")
        assert merged.returncode == 1
        summary = json.loads((out / "job-f" / "summary.json").read_text())
        assert [(f["prefix"], f["error"]) for f in summary["failures"]] == [("d/", "AccessDenied")]
        assert sorted(bundles(out / "job-f")) == [
            "partners/alice",
            "partners/bob",
            "partners/carol",
        ]
        proxy.faults.remove(denied)
        failed = next(k for k, code in codes.items() if code)
        again = start_shard(manifest, out, proxy.url, "job-f", f"{failed}/3")
        again.communicate(timeout=120)
        assert again.returncode == 0
    merged = merge(out / "job-f")
    assert merged.returncode == 0, merged.stderr
    assert _keys(out / "job-f") == EXPECTED


def test_shards_not_of_this_run_are_refused(s3: S3, tmp_path: Path) -> None:
    """A shard of another manifest under the same run id, and a shard's summary, record or
    part edited after it finished: exit 2 naming the shard, nothing written. A --manifest
    other than the one the shards ran: exit 2; the right one merges."""
    manifest = seed(s3, tmp_path)
    other = tmp_path / "other.yml"
    other.write_text(manifest.read_text() + "# edited\n", encoding="utf-8")
    good, mixed = tmp_path / "good", tmp_path / "mixed"
    started = [
        start_shard(manifest, good, s3.endpoint, "job-t", "0/2"),
        start_shard(manifest, good, s3.endpoint, "job-t", "1/2"),
        start_shard(other, mixed, s3.endpoint, "job-t", "1/2"),
    ]
    for process in started:
        process.communicate(timeout=120)
        assert process.returncode == 0
    shutil.copytree(good / "job-t" / "shards" / "0-of-2", mixed / "job-t" / "shards" / "0-of-2")
    cases = {"manifest": mixed}
    for what in ("summary", "record", "part"):
        cases[what] = tmp_path / what
        shutil.copytree(good, cases[what])
        shard = cases[what] / "job-t" / "shards" / "1-of-2"
        if what == "summary":
            found = json.loads((shard / "summary.json").read_text())
            found["manifest_sha256"] = "0" * 64
            (shard / "summary.json").write_text(json.dumps(found))
        elif what == "record":
            record = (shard / "shard.json").read_text()
            (shard / "shard.json").write_text(record.replace('"links": ', '"links": 1', 1))
        else:
            part = sorted((shard / "parts").glob("*.jsonl"))[0]
            part.write_text(part.read_text() + part.read_text().splitlines()[0] + "\n")
    for what, out in cases.items():
        merged = merge(out / "job-t")
        assert merged.returncode == 2, (what, merged.stderr)
        assert "shard 1-of-2" in merged.stderr, what
        assert sorted(p.name for p in (out / "job-t").iterdir()) == ["shards"], what
    wrong = merge(good / "job-t", "--manifest", str(other))
    assert wrong.returncode == 2
    assert "other.yml has sha256" in wrong.stderr
    assert merge(good / "job-t", "--manifest", str(manifest)).returncode == 0


def test_inventory_jobs_are_sharded_by_data_file(s3: S3, tmp_path: Path) -> None:
    """A job reading an S3 Inventory report of 5 data files (rows shuffled over them), in
    3 shards: each shard reads its data files; the merge puts each prefix's rows back in key
    order: one machine's rows, headers and report summary (rows and kept added up)."""
    seed(s3, tmp_path)
    written = write_inventory(
        s3, bucket="inventory-dest", source_bucket=BUCKET, rows=rows_of(s3, BUCKET), files=5
    )
    manifest = tmp_path / "inv.yml"
    manifest.write_text(
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: inv
    source: {{inventory: '{written.uri}'}}
    prefixes: [a/, b/, c/]
    recipients: [{{id: x}}, {{id: y, prefixes: [e/, a/x/]}}]
""",
        encoding="utf-8",
    )
    solo = one_machine(manifest, tmp_path / "solo", s3.endpoint, "solo")
    out = tmp_path / "out"
    run_shards(manifest, out, s3.endpoint, "job-i", 3)
    read = [
        json.loads((out / "job-i" / "shards" / f"{k}-of-3" / "shard.json").read_text())
        for k in range(3)
    ]
    shares = [r["inventories"]["reports"][0]["rows"] for r in read]
    assert sum(shares) == 17 and max(shares) < 17
    merged = merge(out / "job-i")
    assert merged.returncode == 0, merged.stderr
    assert bundles(out / "job-i") == bundles(solo)
    assert len(bundles(solo)["inv/y"]) == 14
    for name in ("x", "y"):
        header = json.loads((out / "job-i" / "inv" / name / "links.json").read_text())["header"]
        assert header["inventory"]["manifest"] == f"s3://inventory-dest/{written.manifest}"
    ours = json.loads((out / "job-i" / "summary.json").read_text())["inventories"]
    theirs = json.loads((solo / "summary.json").read_text())["inventories"]
    assert ours == theirs


_GUARDED = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: guarded
    prefixes: [a/, b/, c/, d/, e/, f/, g/]
    filters: {{max_links: 16}}
    recipients: [{{id: auditor}}]
  - name: open
    prefixes: [b/, c/]
    recipients: [{{id: partner}}]
"""


def test_max_links_is_judged_on_the_merged_totals(s3: S3, tmp_path: Path) -> None:
    """A job past its max_links (17 objects, 16 allowed) split over two shards, each under
    the limit: both shards exit 0, and the merge fails that job alone (exit 1,
    ``max_links_exceeded``, no bundle for it) exactly as one machine does."""
    seed(s3, tmp_path)
    manifest = tmp_path / "guarded.yml"
    manifest.write_text(_GUARDED, encoding="utf-8")
    solo = invoke(
        "run", str(manifest), "--out", str(tmp_path / "solo"), "--endpoint-url", s3.endpoint,
        "--run-id", "solo", "--workers", "1", "--quiet",
    )  # fmt: skip
    assert solo.returncode == 1, solo.stderr
    out = tmp_path / "out"
    run_shards(manifest, out, s3.endpoint, "job-g", 2)
    records = [out / "job-g" / "shards" / f"{k}-of-2" / "shard.json" for k in range(2)]
    guarded = [json.loads(path.read_text())["routes"][0]["links"] for path in records]
    # Neither shard alone holds more than the limit: only the totals exceed it.
    assert sum(guarded) == 17 and max(guarded) <= 16, guarded
    merged = merge(out / "job-g")
    assert merged.returncode == 1, merged.stderr
    events = [json.loads(line) for line in (out / "job-g" / "audit.jsonl").read_text().splitlines()]
    exceeded = [e for e in events if e["event"] == "max_links_exceeded" and "shard" not in e]
    assert [(e["job"], e["recipient"], e["max_links"]) for e in exceeded] == [
        ("guarded", "auditor", 16)
    ]
    assert sorted(bundles(out / "job-g")) == sorted(bundles(tmp_path / "solo" / "solo"))
    assert sorted(bundles(out / "job-g")) == ["open/partner"]
    ours = json.loads((out / "job-g" / "summary.json").read_text())
    theirs = json.loads((tmp_path / "solo" / "solo" / "summary.json").read_text())
    assert ours["status"] == theirs["status"] != "ok"
    unstamped = {"earliest_expiry": None}
    assert ours["totals"] | unstamped == theirs["totals"] | unstamped
