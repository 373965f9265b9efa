"""A prefix split into sub-folders is spread across the shards: each lists only its share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sharebatch.shards.assign import owner_of
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.s3 import S3
from tests.support.shards import bundles, csv_rows, invoke, merge, one_machine

BUCKET = "split-shards"
FOLDERS = [f"big/f{i:02d}/" for i in range(12)]
FILES = {f"{folder}obj-{j}.txt": f"{folder}{j}".encode() for folder in FOLDERS for j in range(3)}
# The task's own objects sort between its folders ('.' < '/'); they stay with its owner.
FILES |= {"big/a.txt": b"a", "big/f05.txt": b"dot", "big/zz.csv": b"zz", "small/1.txt": b"s1"}
MANIFEST = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: j
    prefixes: [big/]
    recipients:
      - {{id: ann, prefixes: [small/]}}
      - {{id: ben, filters: {{include: ["**/*.txt"]}}}}
"""


def _seed(s3: S3, tmp: Path) -> Path:
    s3.bucket(BUCKET, FILES)
    path = tmp / "split.yml"
    path.write_text(MANIFEST, encoding="utf-8")
    return path


def _shard(manifest: Path, out: Path, proxy: FaultProxy, shard: str) -> list[str]:
    """One shard, in this process (its listing is what is tested here; ``test_merge`` runs
    shards as processes), through the proxy (one endpoint for all shards, as the merge
    requires; one shard at a time, so each one's requests are told apart): the prefixes it
    asked S3 to list, a probe included, in order."""
    before = len(proxy.seen)
    done = invoke(
        "run", str(manifest), "--out", str(out), "--endpoint-url", proxy.url,
        "--run-id", "job", "--shard", shard, "--workers", "1", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [seen.prefix for seen in proxy.seen[before:] if seen.prefix is not None]


def _record(out: Path, run_id: str, shard: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(
        (out / run_id / "shards" / shard / "shard.json").read_text(encoding="utf-8")
    )
    return found


@pytest.mark.parametrize("count", [2, 3])
def test_sub_folders_are_listed_once_across_shards(s3: S3, tmp_path: Path, count: int) -> None:
    """Every shard probes big/ once; each sub-folder is listed by the shard its own hash
    names and by no other (disjoint, complete), the task's own objects by the task's owner;
    the shards record the same view and the segments they listed; the merge has one
    machine's rows in its order."""
    manifest = _seed(s3, tmp_path)
    solo = one_machine(manifest, tmp_path / "solo", s3.endpoint, "solo")
    out = tmp_path / "out"
    with fault_proxy(s3.endpoint) as proxy:
        requested = {k: _shard(manifest, out, proxy, f"{k}/{count}") for k in range(count)}
    folders_of: dict[int, set[str]] = {}
    for k, listed in requested.items():
        assert listed.count("big/") == 1  # the probe: big/ is never listed whole
        folders_of[k] = {p for p in listed if p not in ("big/", "small/")}
        assert len(folders_of[k]) == len([p for p in listed if p not in ("big/", "small/")])
        assert folders_of[k] == {f for f in FOLDERS if owner_of(BUCKET, f, count) == k}
    assert sorted(f for found in folders_of.values() for f in found) == FOLDERS
    assert all(folders_of.values())  # twelve folders: every shard has some
    views, listed_segments = set(), []
    for k in range(count):
        tasks = _record(out, "job", f"{k}-of-{count}")["tasks"]
        assert isinstance(tasks, list)
        big = next(t for t in tasks if t["prefix"] == "big/")
        split = big["split"]
        views.add((split["folders"], split["folders_sha256"], split["segments"]))
        listed_segments += split["listed"]
    # a.txt, f00/..f04/, f05.txt, f05/..f11/, zz.csv: 15 segments, each listed by one shard.
    ((folders, _, segments),) = views
    assert (folders, segments) == (12, 15)
    assert sorted(listed_segments) == list(range(15))
    merged = merge(out / "job")
    assert merged.returncode == 0, merged.stderr
    assert bundles(out / "job") == bundles(solo)
    assert csv_rows(out / "job") == csv_rows(solo)
    keys = [row["key"] for row in bundles(out / "job")["j/ben"]]
    assert keys == sorted(k for k in FILES if k.startswith("big/") and k.endswith(".txt"))


def test_shards_that_saw_other_sub_folders_are_refused(s3: S3, tmp_path: Path) -> None:
    """A sub-folder added between two shards' probes: the merge exits 2 naming the shard
    and the prefix, writes nothing; the earlier shard run again, the merge has every key."""
    manifest = _seed(s3, tmp_path)
    out = tmp_path / "out"
    with fault_proxy(s3.endpoint) as proxy:
        _shard(manifest, out, proxy, "0/2")
        s3.client.put_object(Bucket=BUCKET, Key="big/f99/new.txt", Body=b"new")
        _shard(manifest, out, proxy, "1/2")
        refused = merge(out / "job")
        assert refused.returncode == 2
        assert "shard 1-of-2 saw other sub-folders of split-shards/big/" in refused.stderr
        assert sorted(p.name for p in (out / "job").iterdir()) == ["shards"]
        _shard(manifest, out, proxy, "0/2")
    merged = merge(out / "job")
    assert merged.returncode == 0, merged.stderr
    assert "big/f99/new.txt" in [row["key"] for row in bundles(out / "job")["j/ben"]]


def test_a_shard_that_could_not_probe_fails_the_task_until_run_again(
    s3: S3, tmp_path: Path
) -> None:
    """S3 refuses the probe of big/ to a shard that does not own big/: that shard exits 0
    (the task is not its own), the merge exits 1 with big/ failed, naming the shard to run
    again; run again, the merge is ok."""
    manifest = _seed(s3, tmp_path)
    out = tmp_path / "out"
    other = 1 - owner_of(BUCKET, "big/", 2)
    with fault_proxy(s3.endpoint) as proxy:
        # Every attempt at it (the sub-folders are never reached: nothing was split).
        denied = proxy.add("denied", "big/", times=None)
        assert set(_shard(manifest, out, proxy, f"{other}/2")) == {"big/", "small/"}
        proxy.faults.remove(denied)
        _shard(manifest, out, proxy, f"{1 - other}/2")
        merged = merge(out / "job")
        assert merged.returncode == 1
        summary = json.loads((out / "job" / "summary.json").read_text(encoding="utf-8"))
        (failure,) = summary["failures"]
        assert failure["prefix"] == "big/" and failure["error"] == "AccessDenied"
        assert f"shard {other}-of-2 could not probe it" in failure["message"]
        _shard(manifest, out, proxy, f"{other}/2")
    merged = merge(out / "job")
    assert merged.returncode == 0, merged.stderr
    assert len(bundles(out / "job")["j/ann"]) == len(FILES)
