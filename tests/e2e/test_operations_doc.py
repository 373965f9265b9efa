"""docs/operations.md: its crontab, systemd units, Kubernetes YAML and jq commands work.

Every `sharebatch ...` command the examples contain is parsed by the real command line, so
an example cannot name an option that does not exist.
"""

from __future__ import annotations

import configparser
import csv
import gzip
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.manifest.load import load_manifest
from tests.support.paths import ROOT
from tests.support.s3 import S3, write_manifest

DOC = ROOT / "docs" / "operations.md"
SCRIPT = Path(sys.executable).parent / "sharebatch"
INSTALLED = "/opt/sharebatch/.venv/bin/sharebatch"  # where the examples install it


def blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def check_cli(args: list[str]) -> None:
    """Parse ``sharebatch ARGS`` as the real CLI would, without running it."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    context = group.make_context("sharebatch", list(args))
    name, command, rest = group.resolve_command(
        context, [*getattr(context, "_protected_args", []), *context.args]
    )
    assert command is not None and name is not None, args
    command.make_context(name, rest, parent=context)


def invocations(command: str) -> list[list[str]]:
    """Every ``sharebatch`` invocation in a shell command line, up to its shell operator."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    found = []
    for index, token in enumerate(tokens):
        if token == "sharebatch" or token.endswith("/sharebatch"):
            args = []
            for arg in tokens[index + 1 :]:
                if set(arg) <= set("();<>|&") or re.fullmatch(r"\d?>>?", arg):
                    break
                args.append(arg)
            found.append(args)
    return found


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, _MONTHS),
    (0, 7, _DAYS),
)


def _cron_value(word: str, low: int, names: tuple[str, ...]) -> int:
    if word.lower() in names:
        return names.index(word.lower()) + low
    assert word.isdigit(), word
    return int(word)


def check_schedule(fields: list[str]) -> None:
    """The five time fields of crontab(5): lists, ranges, steps and names, within bounds."""
    assert len(fields) == 5, fields
    for text, (low, high, names) in zip(fields, _FIELDS, strict=True):
        for part in text.split(","):
            base, slash, step = part.partition("/")
            assert not slash or (step.isdigit() and int(step) > 0), text
            if base == "*":
                continue
            first, dash, last = base.partition("-")
            bounds = [_cron_value(first, low, names)]
            if dash:
                bounds.append(_cron_value(last, low, names))
            assert all(low <= v <= high for v in bounds), text
            assert bounds == sorted(bounds), text


def test_crontab_parses_and_runs_real_commands() -> None:
    """Each crontab line is a variable or a valid schedule + a bash command using real options."""
    [crontab] = blocks("crontab")
    entries = 0
    for line in crontab.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line):
            continue
        fields = line.split(None, 5)
        check_schedule(fields[:5])
        command = fields[5]
        assert "%" not in command  # crontab(5) turns % into a newline
        syntax = subprocess.run(["bash", "-n", "-c", command], capture_output=True, check=False)
        assert syntax.returncode == 0, syntax.stderr
        found = invocations(command)
        assert found, command
        for args in found:
            check_cli(args)
        entries += 1
    assert entries == 4
    assert "MAILTO=" in crontab


def units() -> dict[str, str]:
    found = {}
    for block in blocks("ini"):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"# /etc/systemd/system/(\S+\.(?:service|timer))", first)
        if match:
            found[match[1]] = body
    return found


def test_systemd_units_parse_and_run_real_commands() -> None:
    """The service and timer are INI files with the expected sections; Exec lines are valid."""
    found = units()
    assert sorted(found) == ["sharebatch-q3.service", "sharebatch-q3.timer"]
    service = configparser.ConfigParser(interpolation=None, strict=True)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read_string(found["sharebatch-q3.service"])
    assert service.sections() == ["Unit", "Service"]
    assert service["Service"]["Type"] == "oneshot"
    for key in ("ExecStartPre", "ExecStart"):
        [args] = invocations(service["Service"][key])
        check_cli(args)
    timer = configparser.ConfigParser(interpolation=None, strict=True)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read_string(found["sharebatch-q3.timer"])
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    """systemd-analyze verify accepts both units without a warning, OnCalendar included."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed, so the units were not verified by it")
    for name, body in units().items():
        # verify checks that ExecStart's program exists: use this installation's script.
        (tmp_path / name).write_text(body.replace(INSTALLED, str(SCRIPT)), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_kubernetes_yaml_loads_and_runs_a_real_command() -> None:
    """The manifests load; the CronJob forbids overlap, uses the IRSA service account."""
    [text] = [b for b in blocks("yaml") if "kind: CronJob" in b]
    account, cron = list(yaml.safe_load_all(text))
    assert (account["apiVersion"], account["kind"]) == ("v1", "ServiceAccount")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert (cron["apiVersion"], cron["kind"]) == ("batch/v1", "CronJob")
    spec = cron["spec"]
    check_schedule(spec["schedule"].split())
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    [container] = pod["containers"]
    assert container["command"] == ["sharebatch"]
    check_cli(container["args"])
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}


def test_the_delivery_example_loads_as_a_manifest_section(tmp_path: Path) -> None:
    """The notify: example is real manifest YAML: merged into a manifest, it loads as written."""
    [text] = [b for b in blocks("yaml") if "notify:" in b]
    example = yaml.safe_load(text)
    manifest = {
        "version": 1,
        "defaults": {"bucket": "acme-reports", "expires_in": "7d", **example["defaults"]},
        "jobs": [
            {
                "name": "q3",
                "prefixes": ["q3/"],
                "recipients": [{"id": "globex", "name": "Globex", "email": "ap@globex.example"}],
            }
        ],
    }
    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump(manifest))
    [grant] = load_manifest(path).jobs[0].grants
    assert grant.notify is not None
    smtp = example["defaults"]["notify"]["smtp"]
    assert (grant.notify.smtp.host, grant.notify.smtp.port) == (smtp["host"], smtp["port"])
    assert grant.notify.smtp.security == "starttls"
    assert grant.notify.sender == example["defaults"]["notify"]["from"]
    assert grant.notify.delivery == "page"
    assert grant.notify.subject.endswith("reports for Globex")


JQ_MANIFEST = """\
version: 1
defaults:
  region: eu-west-1
  expires_in: 2h
jobs:
  - name: q3
    bucket: acme-reports
    prefixes: [q3/]
    recipients:
      - id: globex
        prefixes: [globex/]
      - id: initech
  - name: other
    bucket: missing-bucket
    prefixes: [x/]
    recipients:
      - id: carol
"""


def jq_blocks() -> dict[str, str]:
    """The sh blocks after ``AUDIT=...``, by their first comment line."""
    found = {}
    for block in blocks("sh"):
        if block.startswith("AUDIT="):
            assert re.fullmatch(r"AUDIT=\S+\n", block)
            continue
        title, _, body = block.partition("\n")
        assert title.startswith("# ") and "jq " in body
        found[title[2:]] = body
    return found


def test_jq_recipes_read_a_real_audit_log(s3: S3, tmp_path: Path) -> None:
    """Each jq command runs on a real run's audit.jsonl and answers its question."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed, so the audit-log recipes were not run")
    s3.bucket("acme-reports", {"q3/a.pdf": b"a", "q3/b.csv": b"bb", "globex/s.csv": b"sss"})
    manifest = write_manifest(tmp_path / "m.yml", JQ_MANIFEST)
    result = CliRunner().invoke(
        app,
        ["run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint],
        catch_exceptions=False,
    )
    run_dir = Path(result.stdout.strip())
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "q3" / "globex" / "links.csv").open(newline="", encoding="utf-8") as f:
        globex = list(csv.DictReader(f))

    def jq(title: str, audit: Path = run_dir / "audit.jsonl", url: str = globex[-1]["url"]) -> str:
        env = {"PATH": "/usr/bin:/bin", "AUDIT": str(audit), "URL": url}
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", recipes[title]],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    recipes = jq_blocks()
    ended = json.loads(jq("how the run ended"))
    totals = summary["totals"]
    assert ended == {
        "status": "partial",
        "links": totals["links"],
        "bytes": totals["bytes"],
        "failures": 1,
        "earliest_expiry": totals["earliest_expiry"],
    }
    counts = [line.split() for line in jq("links issued per recipient").splitlines()]
    assert counts == [["3", "q3/globex"], ["2", "q3/initech"]]
    received = [line.split("\t") for line in jq("the keys one recipient received, with their"
                                                 " expiry").splitlines()]  # fmt: skip
    # Prefixes are listed concurrently: the log is in signing order, the bundle in key order.
    assert sorted(received) == sorted([row["key"], row["expires_at"]] for row in globex)
    problems = [json.loads(line) for line in jq(
        "warnings and errors: failed prefixes, skipped bundles, max_links guards"
    ).splitlines()]  # fmt: skip
    assert {p["event"] for p in problems} >= {"prefix_failed", "bundle_skipped"}
    leak = "who received a leaked link: its id (a link without one: its hash), in every run's log"
    leaked = json.loads(jq(leak))
    assert leaked == {
        "event": "link_issued",
        "job": "q3",
        "recipient": "globex",
        "key": globex[-1]["key"],
        "expires_at": globex[-1]["expires_at"],
    }
    # The id still names the link when its signature was cut off on the way.
    cut = globex[-1]["url"].split("&X-Amz-Signature=")[0]
    assert json.loads(jq(leak, url=cut)) == leaked
    # A run with link_ids: false: its links are found by their hash.
    plain = write_manifest(
        tmp_path / "plain.yml",
        JQ_MANIFEST.replace("  expires_in: 2h\n", "  expires_in: 2h\n  link_ids: false\n"),
    )
    out = CliRunner().invoke(
        app,
        ["run", str(plain), "--out", str(tmp_path / "plain"), "--endpoint-url", s3.endpoint],
        catch_exceptions=False,
    )
    bare_dir = Path(out.stdout.strip())
    bare = json.loads((bare_dir / "q3" / "globex" / "links.json").read_text())["links"][-1]
    assert bare["link_id"] is None and bare["key"] == "globex/s.csv"
    assert json.loads(jq(leak, bare_dir / "audit.jsonl", bare["url"])) == {
        "event": "link_issued",
        "job": "q3",
        "recipient": "globex",
        "key": bare["key"],
        "expires_at": bare["expires_at"],
    }
    assert (
        hashlib.sha256(globex[-1]["url"].encode()).hexdigest()
        in (run_dir / "audit.jsonl").read_text()
    )
    # A renewed link, renewed in the run folder (the run's log) and in a copy moved out of it
    # (the log beside the new bundle), is traced to its recipient in either log.
    moved = tmp_path / "archive" / "globex"
    shutil.copytree(run_dir / "q3" / "globex", moved)
    for bundle, extra, log in (
        (run_dir / "q3" / "globex", [], None),
        (moved, ["--audit-log", str(run_dir / "audit.jsonl")], "beside"),
    ):
        renewed = CliRunner().invoke(
            app, ["renew", str(bundle), "--within", "3h", "-q", *extra], catch_exceptions=False
        )
        assert renewed.exit_code == 0, renewed.stderr
        new = Path(renewed.stdout.splitlines()[1])
        row = json.loads(new.read_text(encoding="utf-8"))["links"][-1]
        audit = new.with_name(new.stem + ".audit.jsonl") if log else run_dir / "audit.jsonl"
        found = [json.loads(line) for line in jq(leak, audit, row["url"]).splitlines()]
        assert found[-1] == {
            "event": "link_renewed",
            "job": "q3",
            "recipient": "globex",
            "key": row["key"],
            "expires_at": row["expires_at"],
        }


def test_every_example_block_is_checked() -> None:
    """No example in the document escapes these tests (a new block needs a test)."""
    text = DOC.read_text(encoding="utf-8")
    languages = re.findall(r"^```(\w+)$", text, flags=re.MULTILINE)
    expected = ["crontab", "ini", "ini", "yaml", "yaml", "json", "bash", *["sh"] * 7]
    assert sorted(languages) == sorted(expected)
    checked: dict[str, Any] = {"crontab": blocks("crontab"), "ini": units(), "sh": jq_blocks()}
    assert len(checked["ini"]) == 2 and len(checked["sh"]) == 6
    assert len(blocks("json")) == len(blocks("bash")) == 1  # test_logging_setup_works_on_s3


def section(title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## ``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_logging_setup_works_on_s3(s3: S3, tmp_path: Path) -> None:
    """The logs bucket's policy and the two aws s3api lines, done on S3 (moto checks the
    policy for the logging service, as S3 does): logging is on, and doctor says where the
    logs go; before, doctor's WARN held the same put-bucket-logging line."""
    [policy] = blocks("json")
    [setup] = blocks("bash")
    put_policy, put_logging = [shlex.split(line) for line in setup.splitlines()]
    syntax = subprocess.run(["bash", "-n", "-c", setup], capture_output=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    assert put_policy == ["aws", "s3api", "put-bucket-policy", "--bucket", "acme-logs",
                          "--policy", "file://logs-policy.json"]  # fmt: skip
    assert put_logging[:5] == ["aws", "s3api", "put-bucket-logging", "--bucket", "acme-reports"]
    assert put_logging[5] == "--bucket-logging-status"
    status = json.loads(put_logging[6])
    assert status["LoggingEnabled"]["TargetBucket"] == put_policy[4]

    s3.bucket("acme-reports", {"q3/a.pdf": b"a"})
    s3.bucket("acme-logs", {})
    manifest = write_manifest(tmp_path / "m.yml", JQ_MANIFEST.split("  - name: other")[0])

    def logging_check() -> dict[str, str]:
        result = CliRunner().invoke(
            app, ["doctor", str(manifest), "--endpoint-url", s3.endpoint, "--json"]
        )
        [check] = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "logging"]
        return dict(check)

    off = logging_check()
    assert off["status"] == "WARN"
    fix = shlex.split(off["message"].split("turn it on: ", 1)[1])
    assert fix[:6] == put_logging[:6]
    assert json.loads(fix[6]) == {
        "LoggingEnabled": {**status["LoggingEnabled"], "TargetBucket": "LOGS-BUCKET"}
    }
    s3.client.put_bucket_policy(Bucket=put_policy[4], Policy=policy)
    s3.client.put_bucket_logging(Bucket=put_logging[4], BucketLoggingStatus=status)
    on = logging_check()
    assert on["status"] == "OK"
    assert "logs go to s3://acme-logs/acme-reports/" in on["message"]
    assert "--access-logs s3://acme-logs/acme-reports/" in section("Receipts: who downloaded what")


def test_receipts_commands_are_real() -> None:
    """Every sharebatch command the receipts section shows parses with the real command line."""
    text = section("Receipts: who downloaded what")
    commands = [line.strip() for line in text.splitlines() if line.startswith("    sharebatch ")]
    assert len(commands) == 2
    assert any("--only-unused" in c for c in commands)
    for command in commands:
        [args] = invocations(command)
        check_cli(args)


def test_guardrails_commands_are_real() -> None:
    """Every sharebatch command the guardrails section shows parses with the real command
    line, and the aws lines are valid bash."""
    text = section("Guardrails: the bucket policy")
    lines = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    commands = [line for line in lines if line.startswith("sharebatch ")]
    assert len(commands) == 2
    assert any("--existing current.json" in c for c in commands)
    for command in commands:
        [args] = invocations(command)
        check_cli(args)
    for line in lines:
        syntax = subprocess.run(["bash", "-n", "-c", line], capture_output=True, check=False)
        assert syntax.returncode == 0, syntax.stderr


CLOUDTRAIL_RECORD = {
    "eventVersion": "1.11",
    "eventSource": "s3.amazonaws.com",
    "eventName": "GetObject",
    "eventTime": "2026-10-02T09:12:03Z",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "curl/8.5.0",
    "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAIOSFODNN7EXAMPLE"},
    "requestParameters": {
        "bucketName": "acme-reports",
        "Host": "acme-reports.s3.eu-west-1.amazonaws.com",
        "key": "q3/a.pdf",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Date": "20261001T061500Z",
        "X-Amz-Expires": "604800",
        "X-Amz-SignedHeaders": "host",
    },
    "additionalEventData": {
        "SignatureVersion": "SigV4",
        "AuthenticationMethod": "QueryString",
        "bytesTransferredOut": 1,
    },
}


def test_cloudtrail_recipe_picks_presigned_downloads_of_a_key(tmp_path: Path) -> None:
    """The CloudTrail jq recipe, on a trail file shaped as AWS's published records: only the
    presigned GetObject of the key, with its signing time, lifetime, address and signer."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed, so the CloudTrail recipe was not run")
    [recipe] = [body for title, body in jq_blocks().items() if title.startswith("CloudTrail")]
    other_key = json.loads(json.dumps(CLOUDTRAIL_RECORD))
    other_key["requestParameters"]["key"] = "q3/b.csv"
    header_signed = json.loads(json.dumps(CLOUDTRAIL_RECORD))
    header_signed["additionalEventData"]["AuthenticationMethod"] = "AuthHeader"
    upload = {**CLOUDTRAIL_RECORD, "eventName": "PutObject"}
    trail = tmp_path / "trail"
    trail.mkdir()
    records = {"Records": [CLOUDTRAIL_RECORD, other_key, header_signed, upload]}
    with gzip.open(trail / "111122223333_CloudTrail_eu-west-1_x.json.gz", "wt") as out:
        json.dump(records, out)
    env = {"PATH": "/usr/bin:/bin", "TRAIL": str(trail), "KEY": "q3/a.pdf"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {
            "eventTime": "2026-10-02T09:12:03Z",
            "signed": "20261001T061500Z",
            "expires_in": "604800",
            "ip": "198.51.100.7",
            "agent": "curl/8.5.0",
            "signer": "AKIAIOSFODNN7EXAMPLE",
        }
    ]


def test_readme_receipts_commands_are_real() -> None:
    """README's receipts section (with its "usage in detail"): every sharebatch line parses with
    the real command line, and its put-bucket-logging line is the one docs/operations.md checks
    on S3."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Receipts: who downloaded what\n")
    part = text[start : text.index("\n## ", start + 1)]
    lines = [line.strip() for line in part.splitlines() if line.startswith("    ")]
    commands = [line for line in lines if line.startswith("sharebatch ")]
    assert {command.split()[1] for command in commands} == {"usage", "remind"}
    for command in commands:
        [args] = invocations(command)
        check_cli(args)
    [aws] = [line for line in lines if line.startswith("aws ")]
    [setup] = blocks("bash")
    assert aws == setup.splitlines()[1]


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_cloudfront_setup_makes_a_key_the_example_manifest_loads(tmp_path: Path) -> None:
    """README's "Links longer than 7 days": its openssl lines, run as written (paths moved into
    a temporary folder), make a private P-256 key that its YAML example, completed into a
    manifest, loads with; every sharebatch line parses with the real command line."""
    part = _readme_section("Links longer than 7 days")
    lines = [line.strip() for line in part.splitlines() if line.startswith("       ")]
    setup = [line for line in lines if line.split()[0] in {"openssl", "chmod"}]
    assert len(setup) == 3
    key = tmp_path / "cf.pem"
    for line in setup:
        command = line.replace("/etc/sharebatch/cf.pem", str(key))
        command = command.replace("cf-public.pem", str(tmp_path / "cf-public.pem"))
        subprocess.run(["bash", "-c", command], check=True, capture_output=True)
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cf-public.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    [example] = re.findall(r"^```yaml\n(.*?)^```$", part, flags=re.MULTILINE | re.DOTALL)
    body = example.replace("/etc/sharebatch/cf.pem", str(key))
    manifest = tmp_path / "m.yml"
    manifest.write_text(
        "version: 1\n" + body.replace("defaults:\n", "defaults:\n  bucket: acme-reports\n")
    )
    # Fixed moments: not_before is the next quarter's start, which must fall within 30 days.
    now = datetime(2026, 9, 20, 12, tzinfo=UTC)
    grant = load_manifest(manifest, as_of=now.date(), now=now).jobs[0].grants[0]
    assert (grant.link, grant.allow_ips) == ("cloudfront", ("203.0.113.0/24",))
    assert grant.cloudfront is not None and grant.cloudfront.max_expires_in == 90 * 86400
    shown = [line.strip() for line in part.splitlines() if line.startswith("    ")]
    commands = [line for line in shown if line.startswith("sharebatch ")]
    assert len(commands) == 1  # the guardrails' `policy ... --existing`
    for command in commands:
        [args] = invocations(command)
        check_cli(args)


def test_scanning_commands_are_real() -> None:
    """The scanning section's sharebatch lines parse with the real command line, and it names
    the two clamd addresses the manifest accepts."""
    text = section("Scanning uploads")
    commands = [line.strip() for line in text.splitlines() if line.startswith("    sharebatch ")]
    assert len(commands) == 2 and any("--scan" in c for c in commands)
    for command in commands:
        [args] = invocations(command)
        check_cli(args)
    assert "clamd: tcp://127.0.0.1:3310" in text and "/run/clamav/clamd.ctl" in text


def test_readme_scanning_example_loads_and_its_command_parses(tmp_path: Path) -> None:
    """The README's scanning example is a valid upload: setting, and its command line parses."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Scanning uploads")
    part = readme[start : readme.index("\n## ", start)]
    example = re.search(r"```yaml\n(.*?)```", part, flags=re.DOTALL)
    assert example is not None
    path = write_manifest(
        tmp_path / "scan.yml",
        "version: 1\n"
        + example.group(1).replace(
            "defaults:\n", "defaults:\n  bucket: acme-reports\n  expires_in: 1h\n"
        )
        + "jobs:\n  - {name: q3, prefixes: [q3/], recipients: [{id: globex}]}\n",
    )
    (grant,) = load_manifest(path).jobs[0].grants
    assert grant.scan is not None and grant.scan.quarantine_prefix == "quarantine/"
    commands = [line.strip() for line in part.splitlines() if line.startswith("    sharebatch ")]
    for command in commands:
        [args] = invocations(command)
        check_cli(args)
