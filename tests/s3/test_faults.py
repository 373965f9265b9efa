"""A flaky, throttling S3: retries where they help, isolation where they do not, nothing lost.

Every run goes through ``tests/support/faultproxy.py`` in front of moto. Each test then compares the
bundles and the summary with what S3 really holds, listed directly from moto: every object of
every prefix that succeeded is in the bundle of every recipient entitled to it, exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.s3 import S3, fetch, write_manifest

BUCKET = "flaky-bucket"
# Four prefixes, each recipient entitled to a different mix of them.
FILES = {f"{p}/{name}": f"{p}:{name}".encode() for p in "abcd" for name in ("1.txt", "2.txt")}
ROUTES = {"alice": ["a/"], "bob": ["b/"], "carol": ["c/"], "dave": ["d/"], "erin": ["a/", "d/"]}
MANIFEST = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: share
    prefixes: []
    recipients:
""" + "".join(f"      - {{id: {who}, prefixes: [{', '.join(p)}]}}\n" for who, p in ROUTES.items())


@pytest.fixture
def proxy(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """moto behind the fault proxy, seeded with FILES; short timeouts and few attempts."""
    s3.bucket(BUCKET, FILES)
    # Small enough that a "slow" answer need not be long, large enough for a loaded machine.
    monkeypatch.setenv("SHAREBATCH_S3_READ_TIMEOUT", "1")
    monkeypatch.setenv("SHAREBATCH_S3_ATTEMPTS", "3")
    with fault_proxy(s3.endpoint) as running:
        yield running


def run(tmp_path: Path, proxy: FaultProxy, manifest: str = MANIFEST) -> tuple[Any, dict[str, Any]]:
    path = write_manifest(tmp_path / "m.yml", manifest)
    result = CliRunner().invoke(
        app,
        ["run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", proxy.url],
        catch_exceptions=False,
    )
    run_dir = Path(result.stdout.strip())
    return result, json.loads((run_dir / "summary.json").read_text())


def held_by_s3(s3: S3, prefix: str) -> list[str]:
    """The keys under ``prefix`` as moto lists them, without the proxy."""
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


def assert_bundles_match_s3(
    s3: S3, run_dir: Path, summary: dict[str, Any], failed: set[str]
) -> None:
    """Complete recipients hold exactly S3's objects, in order, once; the others no bundle."""
    recipients = {r["id"]: r for r in summary["jobs"][0]["recipients"]}
    for who, prefixes in ROUTES.items():
        bundle = run_dir / "share" / who / "links.json"
        if failed & set(prefixes):
            assert not bundle.parent.exists(), who
            assert recipients[who]["bundle"] is None
            continue
        expected = [key for prefix in prefixes for key in held_by_s3(s3, prefix)]
        links = json.loads(bundle.read_text())["links"]
        assert [link["key"] for link in links] == expected, who
        assert recipients[who]["links"] == len(expected)
        csv_rows = (bundle.parent / "links.csv").read_text().splitlines()
        assert len(csv_rows) == len(expected) + 1
    listed = {p["prefix"]: p for p in summary["prefixes"]}
    for prefix, entry in listed.items():
        if prefix in failed:
            assert entry["status"] == "failed"
        else:
            assert (entry["status"], entry["objects"]) == ("listed", len(held_by_s3(s3, prefix)))


def test_slowdown_bursts_are_retried(s3: S3, proxy: FaultProxy, tmp_path: Path) -> None:
    """Bursts of 503 SlowDown shorter than the attempts are retried: every bundle complete."""
    proxy.add("slowdown", "a/", times=2)
    proxy.add("slowdown", "c/", times=1)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 0, result.stderr
    assert (summary["status"], summary["failures"]) == ("ok", [])
    assert [s.fault for s in proxy.requests_for("a/")][:3] == ["slowdown", "slowdown", None]
    assert_bundles_match_s3(s3, Path(result.stdout.strip()), summary, failed=set())


def test_dropped_and_broken_responses_are_retried(
    s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A reset mid-body, a truncated XML body and a 500 are each retried to success."""
    proxy.add("reset", "a/", times=1)
    proxy.add("truncate", "b/", times=1)
    proxy.add("error500", "c/", times=1)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 0, result.stderr
    assert summary["status"] == "ok"
    for prefix, fault in (("a/", "reset"), ("b/", "truncate"), ("c/", "error500")):
        assert [s.fault for s in proxy.requests_for(prefix)][:2] == [fault, None]
    run_dir = Path(result.stdout.strip())
    assert_bundles_match_s3(s3, run_dir, summary, failed=set())
    erin = json.loads((run_dir / "share" / "erin" / "links.json").read_text())["links"]
    assert [fetch(link["url"]) for link in erin] == [FILES[link["key"]] for link in erin]


def test_slow_answer_past_the_read_timeout_is_retried(
    s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """An answer held past the read timeout is abandoned and asked again: complete bundles."""
    proxy.add("slow", "d/", times=1, delay=10.0)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 0, result.stderr
    assert [s.fault for s in proxy.requests_for("d/")][:2] == ["slow", None]
    assert_bundles_match_s3(s3, Path(result.stdout.strip()), summary, failed=set())


def test_prefixes_that_keep_failing_are_isolated_and_reported(
    s3: S3, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faults past every attempt fail only their prefix: exit 1, the summary names each and
    why, recipients needing one get no bundle, every other bundle is complete."""
    monkeypatch.setenv("SHAREBATCH_S3_ATTEMPTS", "2")
    proxy.add("slowdown", "a/", times=None)
    proxy.add("reset", "b/", times=None)
    proxy.add("slow", "c/", times=None, delay=10.0)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 1, result.stderr
    assert summary["status"] == "partial"
    reasons = {f["prefix"]: f["error"] for f in summary["failures"]}
    assert reasons == {"a/": "SlowDown", "b/": "ConnectionClosedError", "c/": "ReadTimeoutError"}
    assert all(f["kind"] == "prefix" and f["message"] for f in summary["failures"])
    # Each failed prefix was tried exactly SHAREBATCH_S3_ATTEMPTS times, then given up.
    assert [len(proxy.requests_for(p)) for p in ("a/", "b/", "c/")] == [2, 2, 2]
    assert_bundles_match_s3(s3, Path(result.stdout.strip()), summary, failed={"a/", "b/", "c/"})
    assert "prefix_failed" in result.stderr


def test_truncated_xml_that_persists_fails_its_prefix(
    s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A body that is always cut short fails its prefix with a short, located message."""
    proxy.add("truncate", "b/", times=None)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 1, result.stderr
    [failure] = summary["failures"]
    assert (failure["prefix"], failure["kind"]) == ("b/", "prefix")
    # The parser's error quotes the response body; the summary keeps a bounded message.
    assert len(failure["message"]) <= 300
    assert_bundles_match_s3(s3, Path(result.stdout.strip()), summary, failed={"b/"})


def test_faults_on_later_pages_lose_and_repeat_nothing(
    s3: S3, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retried requests for page 2 and later keep every key exactly once, in key order."""
    # Three faults in a row on one page, then success: four attempts are needed.
    monkeypatch.setenv("SHAREBATCH_S3_ATTEMPTS", "4")
    many = {f"d/many/{i:03d}.txt": str(i).encode() for i in range(45)}
    for key, body in many.items():
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=body)
    proxy.page_size = 10
    proxy.add("reset", "d/", times=1, later_pages=True)
    proxy.add("slowdown", "d/", times=1, later_pages=True)
    proxy.add("truncate", "d/", times=1, later_pages=True)
    result, summary = run(tmp_path, proxy)
    assert result.exit_code == 0, result.stderr
    faults = [s.fault for s in proxy.requests_for("d/") if s.later_page]
    assert faults[:3] == ["reset", "slowdown", "truncate"]
    run_dir = Path(result.stdout.strip())
    assert_bundles_match_s3(s3, run_dir, summary, failed=set())
    dave = [
        link["key"] for link in json.loads((run_dir / "share/dave/links.json").read_text())["links"]
    ]
    assert len(dave) == len(set(dave)) == len(many) + 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("SHAREBATCH_S3_ATTEMPTS", "0"), ("SHAREBATCH_S3_READ_TIMEOUT", "soon")],
)
def test_bad_retry_settings_are_exit_2_and_write_nothing(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """An invalid SHAREBATCH_S3_* setting is named, exit 2, before anything is written."""
    monkeypatch.setenv(name, value)
    path = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = CliRunner().invoke(
        app, ["run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 2
    assert f"{name}={value!r}" in result.stderr
    assert not (tmp_path / "out").exists()
