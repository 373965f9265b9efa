"""``--shard K/N`` and ``auto/N``: parsed, or refused with exit 2 and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharebatch.errors import UsageError
from sharebatch.shards.spec import ShardSpec, parse_shard
from tests.support.shards import invoke


def test_k_of_n_is_parsed() -> None:
    """K/N names shard K (from 0) of N, and its folder name."""
    spec = parse_shard("2/7", {})
    assert spec == ShardSpec(2, 7)
    assert spec.name == "2-of-7"


@pytest.mark.parametrize("variable", ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"])
def test_auto_reads_the_schedulers_index(variable: str) -> None:
    """auto/N takes K from Kubernetes' or AWS Batch's index variable."""
    assert parse_shard("auto/4", {variable: "3"}) == ShardSpec(3, 4)


@pytest.mark.parametrize(
    ("text", "environ", "says"),
    [
        ("3/3", {}, "less than N"),
        ("a/b", {}, "expected K/N"),
        ("1/0", {}, "N must be between"),
        ("auto/3", {}, "neither JOB_COMPLETION_INDEX nor AWS_BATCH_JOB_ARRAY_INDEX"),
        ("auto/3", {"JOB_COMPLETION_INDEX": "3"}, "less than N"),
        ("auto/3", {"AWS_BATCH_JOB_ARRAY_INDEX": "x"}, "not a whole number"),
    ],
)
def test_bad_shards_are_refused(text: str, environ: dict[str, str], says: str) -> None:
    """Each wrong --shard is a usage error (exit 2) saying what is wrong."""
    with pytest.raises(UsageError, match=says) as raised:
        parse_shard(text, environ)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("shard", ["3/3", "a/b"])
def test_the_cli_exits_2_and_writes_nothing(tmp_path: Path, shard: str) -> None:
    """``run --shard 3/3`` (or ``a/b``) exits 2 before anything exists on disk."""
    manifest = tmp_path / "m.yml"
    manifest.write_text("version: 1\njobs: []\n", encoding="utf-8")
    out = tmp_path / "out"
    done = invoke("run", str(manifest), "--out", str(out), "--run-id", "job-1", "--shard", shard)
    assert done.returncode == 2, done.stderr
    assert "--shard" in done.stderr
    assert not out.exists()


def test_shard_needs_a_run_id(tmp_path: Path) -> None:
    """Every shard of a run must name the same run: --shard without --run-id is exit 2."""
    manifest = tmp_path / "m.yml"
    manifest.write_text("version: 1\njobs: []\n", encoding="utf-8")
    done = invoke("run", str(manifest), "--shard", "0/2", "--out", str(tmp_path / "bundles"))
    assert done.returncode == 2
    assert "--run-id" in done.stderr
    assert not (tmp_path / "bundles").exists()


def test_merge_of_a_folder_without_shards_is_refused(tmp_path: Path) -> None:
    """``merge`` of a folder no shard wrote to: exit 2, and nothing is written there."""
    (tmp_path / "out" / "job-1").mkdir(parents=True)
    done = invoke("merge", str(tmp_path / "out" / "job-1"))
    assert done.returncode == 2
    assert "holds no shards" in done.stderr
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "job-1"]
