"""Secrets: no signature, URL, secret key or token in any log, error, traceback or summary.

The suite-wide guard (tests/support/secretsguard.py, wired in by tests/conftest.py) checks
every test;
these tests check the guard itself and the paths most likely to leak: temporary credentials
with every per-link event on stderr, a crash with links in local variables, and the sha256
that lets a leaked link be traced to its recipient.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.run.folder import LOCK_NAME
from tests.support.s3 import S3, SECRET_KEY, write_manifest
from tests.support.secretsguard import Recorder, find_leaks, scan_tree

TOKEN = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLETOKENthat+must/never=be+logged"
SIGNATURE = "a" * 64
URL = (
    "https://b.s3.eu-west-1.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}"
)
MANIFEST = """\
version: 1
defaults: {bucket: secret-bucket, region: eu-west-1, expires_in: 1h}
jobs:
  - name: share
    prefixes: [docs/]
    recipients: [{id: alice}, {id: bob}]
"""


def test_guard_recognises_every_kind_of_leak(tmp_path: Path) -> None:
    """The guard flags a URL, a bare signature taken from a bundle, a token, a PEM private key
    and the secret key in logs and summaries, and leaves bundles (which hold links by design)
    alone."""
    assert find_leaks(f"GET {URL}")
    assert find_leaks('{"x-amz-signature": "' + SIGNATURE + '"}')
    assert find_leaks(f"key {SECRET_KEY}", {SECRET_KEY})
    for label in ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"):  # a CloudFront key
        assert find_leaks(f"key: -----BEGIN {label}-----\nMIGHAgEAMBMGByqGSM49")
    assert not find_leaks("-----BEGIN PUBLIC KEY-----")
    assert not find_leaks("url_sha256=" + hashlib.sha256(URL.encode()).hexdigest())
    run = tmp_path / "run"
    (run / "job" / "alice").mkdir(parents=True)
    (run / "job" / "alice" / "links.json").write_text(json.dumps({"links": [{"url": URL}]}))
    (run / "summary.json").write_text('{"status": "ok"}')
    problems, signatures = scan_tree(tmp_path, set())
    assert (problems, signatures) == ([], {SIGNATURE})
    (run / "audit.jsonl").write_text(json.dumps({"event": "oops", "sig": SIGNATURE}) + "\n")
    problems, _ = scan_tree(tmp_path, set())
    assert len(problems) == 1 and problems[0].startswith(str(run / "audit.jsonl"))
    recorder = Recorder(allow_stdout=True)
    recorder.add("stdout", URL, stdout=True)
    assert recorder.problems(None) == []
    recorder.add("stderr", f"error near {SIGNATURE}")
    assert len(recorder.problems(tmp_path)) == 2  # the audit log above, and stderr
    (run / "audit.jsonl").unlink()  # planted on purpose; the real guard checks this test too


# The shape of a real CloudFront signature (RSA 2048: 344 characters of CloudFront's URL-safe
# base64), made up. '~' '-' '_' stand for '/' '+' '='; about one signature in four has one in
# its first 8 characters, which the SigV2 alphabet alone would miss.
CF_SIGNATURE = "Ab~d-fGh_" + "k" * 333 + "__"
CF_URL = (
    "https://d1.cloudfront.net/a.pdf?Expires=1767290400"
    f"&Signature={CF_SIGNATURE}&Key-Pair-Id=K2JCJMDEHXQW5F"
)


def test_guard_sees_a_cloudfront_signature_in_output() -> None:
    """A CloudFront URL on stderr or in a log is a leak whatever its signature's first
    characters are (review R1: the ``Signature=`` pattern took the SigV2 alphabet only);
    ``Key-Pair-Id`` and ``Expires`` alone are not secrets."""
    assert find_leaks(f"sharebatch: error: {CF_URL}") != []
    assert find_leaks("Signature=~~--__AAbb") != []
    assert find_leaks("Expires=1767290400&Key-Pair-Id=K2JCJMDEHXQW5F") == []


def test_guard_sees_a_bare_cloudfront_signature_taken_from_a_bundle(tmp_path: Path) -> None:
    """The signature of a CloudFront link in a bundle (a row with ``Key-Pair-Id``) printed
    alone in an audit log is a leak, as an S3 link's ``X-Amz-Signature`` is (review R1:
    ``scan_tree`` harvested S3 signatures only)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "links.csv").write_text(f"key,url\na.pdf,{CF_URL}\n", encoding="utf-8")
    problems, signatures = scan_tree(tmp_path, set())
    assert (problems, signatures) == ([], {CF_SIGNATURE})
    (run / "audit.jsonl").write_text(f'{{"sig": "{CF_SIGNATURE}"}}\n', encoding="utf-8")
    problems, _ = scan_tree(tmp_path, set())
    assert len(problems) == 1 and problems[0].startswith(str(run / "audit.jsonl"))
    (run / "audit.jsonl").unlink()  # planted on purpose; the real guard checks this test too


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_temporary_credentials_never_reach_logs_or_summary(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    """With a session token and -v (every link_issued event on stderr), neither stderr, stdout,
    the audit log nor the summary holds a URL, signature, token or secret key; the audit log
    has each link's sha256, which names the recipient a leaked link was issued to."""
    s3.bucket("secret-bucket", {"docs/a.pdf": b"a", "docs/b.pdf": b"b"})
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = CliRunner().invoke(
        app,
        ["run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
         "-v", "--log-format", log_format],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    texts = {
        "stderr": result.stderr,
        "stdout": result.stdout,
        "audit": (run_dir / "audit.jsonl").read_text(),
        "summary": (run_dir / "summary.json").read_text(),
    }
    assert "link_issued" in texts["stderr"]
    links = json.loads((run_dir / "share" / "bob" / "links.json").read_text())["links"]
    leaked = links[0]["url"]
    assert "X-Amz-Security-Token=" in leaked  # the links do carry the token, as they must
    signature = leaked.rsplit("X-Amz-Signature=", 1)[1]
    for where, text in texts.items():
        for secret in (TOKEN, SECRET_KEY, signature, "X-Amz-Signature", "X-Amz-Credential"):
            assert secret not in text, (where, secret[:12])
    digest = hashlib.sha256(leaked.encode()).hexdigest()
    events = [json.loads(line) for line in texts["audit"].splitlines()]
    issued = [e for e in events if e.get("url_sha256") == digest]
    # Alice's link to the same object, signed in the same second with the same expiry, is
    # byte-identical to Bob's: the digest names every recipient who holds that very URL.
    assert {(e["event"], e["key"]) for e in issued} == {("link_issued", "docs/a.pdf")}
    assert "bob" in {e["recipient"] for e in issued}
    lock = tmp_path / "out" / LOCK_NAME
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


CRASH = """\
import sys
from sharebatch.run import bundles

real_write = bundles.PartFile.write

def write_then_crash(self, links):
    links = list(links)  # the signed links are a local of this frame, and of its callers
    real_write(self, links)
    raise RuntimeError("disk on fire")

real_columns = bundles.PartFile.write_columns

def columns_then_crash(self, *args):
    real_columns(self, *args)  # the chunk's signed URLs are a local of its callers
    raise RuntimeError("disk on fire")

# A chunk of plain GET rows is staged from columns, any other through write: crash in both.
bundles.PartFile.write = write_then_crash
bundles.PartFile.write_columns = columns_then_crash
from sharebatch.cli import main
sys.argv[0] = "sharebatch"
main()
"""


def test_a_crash_with_links_in_scope_prints_no_link(s3: S3, tmp_path: Path) -> None:
    """An unexpected error while links are in local variables: a plain traceback without
    locals and without any URL, exit 1, and a summary that says 'failed' and keeps no bundle."""
    s3.bucket("secret-bucket", {"docs/a.pdf": b"a"})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    command = [sys.executable, "-c", CRASH, "run", str(manifest), "--out", str(out)]
    command += ["--endpoint-url", s3.endpoint, "--run-id", "crashed", "-v"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: disk on fire" in done.stderr
    for secret in ("X-Amz-Signature", "X-Amz-Credential", "http://127.0.0.1", SECRET_KEY):
        assert secret not in done.stderr, secret
    run_dir = out / "crashed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["audit.jsonl", "summary.json"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", "RuntimeError")
