"""`sharebatch inspect` on upload slots: the table, --json, exit codes, escaping, no secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch.times import iso
from tests.support.linkkit import invoke, parse_iso
from tests.support.s3 import S3
from tests.support.slot_run import POST_KEY, PUT_KEY, bundle_json, rewrite_json, slot_run


def secrets_of(bundle: Path) -> list[str]:
    """Every secret the bundle's slots hold: URLs, curl commands, form policies, signatures."""
    found: list[str] = []
    for row in bundle_json(bundle)["uploads"]:
        fields = row["fields"]
        found += [
            row["url"],
            row["curl"],
            *(fields.get(n, "") for n in ("policy", "x-amz-signature")),
        ]
    return [s for s in found if s]


def assert_no_secret(bundle: Path, output: str) -> None:
    """No URL, form signature or policy of ``bundle`` is in ``output``."""
    assert "X-Amz-Signature" not in output and "://" not in output
    for secret in secrets_of(bundle):
        assert secret not in output


def test_an_uploads_csv_is_shown_slot_by_slot(s3: S3, tmp_path: Path) -> None:
    """inspect uploads.csv: recipient, status, end, method, size, key, type and id; exit 0."""
    bundle = slot_run(s3, tmp_path) / "q3" / "globex"
    [row] = bundle_json(bundle)["uploads"]
    result = invoke("inspect", str(bundle / "uploads.csv"))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"bundle {bundle / 'uploads.csv'} (csv)"
    assert lines[1] == "  upload slots of globex: 1 slot, 1 valid, 0 expiring, 0 expired"
    assert lines[2].split() == [
        "STATUS",
        "EXPIRES",
        "AT",
        "TIME",
        "LEFT",
        "METHOD",
        "MAX",
        "SIZE",
        "KEY",
    ]
    cells = lines[3].split()
    assert cells[:2] == ["VALID", row["expires_at"]]
    assert cells[-4:] == ["PUT", "1000", "B", PUT_KEY]
    assert lines[4:7] == [
        "      content type: application/pdf",
        f"      link id: {row['link_id']}",
        "inspect: 0 links: 0 valid, 0 expiring, 0 expired;"
        " 1 upload slot: 1 valid, 0 expiring, 0 expired",
    ]
    assert_no_secret(bundle, result.stdout + result.stderr)


def test_a_folder_shows_links_then_slots_and_json_holds_them(s3: S3, tmp_path: Path) -> None:
    """A bundle folder shows its links and its POST slot (key prefix); --json the same."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    [row] = bundle_json(bundle)["uploads"]
    result = invoke("inspect", str(bundle))
    assert result.exit_code == 0, result.stderr
    assert "  recipient initech: 1 link, 1 valid, 0 expiring, 0 expired" in result.stdout
    assert "  upload slots of initech: 1 slot, 1 valid, 0 expiring, 0 expired" in result.stdout
    assert f"POST   1000 B    {POST_KEY}" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "inspect: 1 link: 1 valid, 0 expiring, 0 expired;"
        " 1 upload slot: 1 valid, 0 expiring, 0 expired"
    )
    shown = invoke("inspect", str(bundle), "--json")
    assert shown.exit_code == 0
    report = json.loads(shown.stdout)
    [slot] = report["bundles"][0]["uploads"]
    assert (slot["method"], slot["key"], slot["link_id"]) == ("POST", POST_KEY, row["link_id"])
    assert slot["expires_at"] == row["expires_at"]
    assert report["upload_slots"] == {"valid": 1, "expiring": 0, "expired": 0, "invalid": 0}
    assert_no_secret(bundle, result.stdout + shown.stdout)


def test_a_slot_expiring_within_the_window_exits_1(s3: S3, tmp_path: Path) -> None:
    """2h slots: --within 3h flags them EXPIRING (exit 1), --within 30m does not (exit 0)."""
    run = slot_run(s3, tmp_path)
    uploads = [str(run / "q3" / r / "uploads.csv") for r in ("globex", "initech")]
    due = invoke("inspect", *uploads, "--within", "3h")
    assert due.exit_code == 1, due.stderr
    assert due.stdout.splitlines()[-1].endswith(
        "2 upload slots: 0 valid, 2 expiring within 3h, 0 expired"
    )
    assert invoke("inspect", *uploads, "--within", "30m").exit_code == 0


def test_an_expired_slot_beside_valid_links_exits_1(s3: S3, tmp_path: Path) -> None:
    """A slot whose row ended (earlier than its policy: allowed) is EXPIRED: exit 1 even
    though every link is valid."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    data = bundle_json(bundle)
    data["uploads"][0]["expires_at"] = iso(datetime.now(UTC) - timedelta(minutes=5))
    result = invoke("inspect", str(rewrite_json(bundle, data)))
    assert result.exit_code == 1
    assert "1 link: 1 valid" in result.stdout
    assert "1 upload slot: 0 valid, 0 expiring, 1 expired" in result.stdout
    assert "expired 5m ago" in result.stdout


def test_a_widened_slot_is_invalid_with_the_reason(s3: S3, tmp_path: Path) -> None:
    """A slot row claiming a later end than its policy: INVALID, the reason, exit 1."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    data = bundle_json(bundle)
    row: dict[str, Any] = data["uploads"][0]
    signed = row["expires_at"]
    row["expires_at"] = iso(parse_iso(signed) + timedelta(days=3))
    result = invoke("inspect", str(rewrite_json(bundle, data)))
    assert result.exit_code == 1
    assert f"INVALID   {signed}" in result.stdout
    assert (
        f"      problem: expires_at {row['expires_at']} is later than its signature's end"
        f" {signed}" in result.stdout
    )
    assert "1 upload slot: 0 valid, 0 expiring, 0 expired, 1 invalid" in result.stdout


def test_outsiders_text_in_slots_reaches_the_terminal_escaped(s3: S3, tmp_path: Path) -> None:
    """A recipient and content type holding terminal controls are shown as \\xNN."""
    bundle = slot_run(s3, tmp_path) / "q3" / "globex"
    data = bundle_json(bundle)
    data["uploads"][0]["recipient"] = "evil\x1b]0;x\x07\x1b[2J\u202e"
    data["uploads"][0]["content_type"] = "a/b\x1b[31m"
    result = invoke("inspect", str(rewrite_json(bundle, data)))
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "upload slots of evil\\x1b]0;x\\x07\\x1b[2J\\u202e: 1 slot" in result.stdout
    assert "content type: a/b\\x1b[31m" in result.stdout


def test_a_bad_uploads_csv_exits_2_naming_file_line_and_field(s3: S3, tmp_path: Path) -> None:
    """An uploads.csv row whose max_size is not a number: exit 2, file:line: field, no output."""
    uploads = slot_run(s3, tmp_path) / "q3" / "globex" / "uploads.csv"
    head, row = uploads.read_text(encoding="utf-8").splitlines()[:2]
    cells = row.split(",")
    cells[head.split(",").index("max_size")] = "lots"
    uploads.write_text(f"{head}\r\n{','.join(cells)}\r\n", encoding="utf-8")
    result = invoke("inspect", str(uploads))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{uploads}:2: max_size or content_type: missing" in result.stderr


def test_slots_the_header_counts_but_the_bundle_lacks_are_named(s3: S3, tmp_path: Path) -> None:
    """A links.json whose header says 1 upload slot but holds none (as renewals that dropped
    them wrote): the problem is shown, --json has it, exit 1 though every link is valid."""
    bundle = slot_run(s3, tmp_path) / "q3" / "globex"
    data = bundle_json(bundle)
    assert data["header"]["uploads"] == 1
    del data["uploads"]
    path = rewrite_json(bundle, data)
    result = invoke("inspect", str(path))
    assert result.exit_code == 1
    problem = "the header counts 1 upload slot, the bundle holds 0"
    assert f"  upload slots: problem: {problem}" in result.stdout
    assert "1 link: 1 valid, 0 expiring, 0 expired" in result.stdout
    report = json.loads(invoke("inspect", str(path), "--json").stdout)
    assert (report["bundles"][0]["uploads_problem"], report["ok"]) == (problem, False)


def test_a_renewed_bundle_shows_its_renewed_slots(s3: S3, tmp_path: Path) -> None:
    """A bundle renewed with its slots due (renew --within past the slots' end) holds them
    again, re-issued: inspect of the renewal shows each slot valid, with no missing-slot
    problem, and exits 0."""
    bundle = slot_run(s3, tmp_path) / "q3" / "globex"
    renewed = invoke("renew", str(bundle), "--within", "3h")
    assert renewed.exit_code == 0, renewed.stderr
    new = Path(renewed.stdout.splitlines()[1])
    assert new.name.startswith("links.renewed-")
    [old_slot] = bundle_json(bundle)["uploads"]
    [new_slot] = json.loads(new.read_text(encoding="utf-8"))["uploads"]
    assert new_slot["link_id"] != old_slot["link_id"]
    result = invoke("inspect", str(new), "--json")
    assert result.exit_code == 0, result.stdout
    [shown] = json.loads(result.stdout)["bundles"]
    assert shown["uploads_problem"] is None
    assert [s["status"] for s in shown["uploads"]] == ["VALID"]
    assert [s["link_id"] for s in shown["uploads"]] == [new_slot["link_id"]]
