"""`sharebatch approve` through the real CLI: what it records, prints and refuses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.run.delivery_plan import DeliveryPlan, read_plan, write_plan
from tests.support.approval_run import gated_run, page_digest
from tests.support.quarterly import QuarterlyRun


@pytest.fixture
def run_dir(quarterly: QuarterlyRun) -> Path:
    """A real run on moto with a plan requiring approval of both bundles."""
    return gated_run(quarterly)


def recorded(run_dir: Path) -> list[tuple[str, str, str]]:
    lines = (run_dir / "approvals.jsonl").read_text(encoding="utf-8").splitlines()
    return [(d["by"], d["job"], d["recipient"]) for d in map(json.loads, lines)]


def test_approve_records_each_bundle_and_says_so(run_dir: Path) -> None:
    """Every bundle is approved by --by; stdout names each and where it was recorded."""
    result = CliRunner().invoke(app, ["approve", str(run_dir), "--by", "alice"])
    assert result.exit_code == 0, result.stderr
    assert recorded(run_dir) == [("alice", "q3", "globex"), ("alice", "q3", "initech")]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("approved q3/globex  bundle sha256 ")
    assert f"page sha256 {page_digest(run_dir, 'globex')[:16]}" in lines[0]
    assert "page sha256" not in lines[1]  # delivery: links has no page
    assert lines[1].startswith("approved q3/initech  bundle sha256 ")
    assert lines[2] == (
        f"approve: 2 bundles approved by alice in run {run_dir.name}; review page updated;"
        f" recorded in {run_dir / 'approvals.jsonl'}"
    )


def test_by_defaults_to_the_login_user(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --by, the approver is the login user (LOGNAME first, as getpass reads it)."""
    monkeypatch.setenv("LOGNAME", "opsuser")
    result = CliRunner().invoke(app, ["approve", str(run_dir), "--only", "q3/initech"])
    assert result.exit_code == 0, result.stderr
    assert recorded(run_dir) == [("opsuser", "q3", "initech")]


def test_unknown_only_names_exit_2_naming_them(run_dir: Path) -> None:
    """Each --only name that picks no bundle is named; nothing is recorded."""
    result = CliRunner().invoke(
        app, ["approve", str(run_dir), "--by", "a", "--only", "globex", "--only", "hooli\u202e"]
    )
    assert result.exit_code == 2
    assert "no such recipient" in result.stderr and "hooli\\u202e" in result.stderr
    assert "\u202e" not in result.stderr
    assert not (run_dir / "approvals.jsonl").exists()


def test_a_run_folder_without_a_plan_exits_2(quarterly: QuarterlyRun) -> None:
    """A run whose manifest had no notify: settings is refused, saying why."""
    run_dir = quarterly({"reports/q3/a.txt": b"a"})
    result = CliRunner().invoke(app, ["approve", str(run_dir), "--by", "alice"])
    assert result.exit_code == 2
    assert "no delivery.json" in result.stderr


def test_an_edited_recipient_id_is_refused_and_shown_escaped(run_dir: Path) -> None:
    """A bidi override in a recipient id (only an edited delivery.json can hold one) is
    refused, exit 2, shown as an escape on stderr; nothing is approved."""
    plan = read_plan(run_dir)
    assert plan is not None
    odd = "init\u202eech"
    (run_dir / "q3" / odd).mkdir()
    (run_dir / "q3" / odd / "links.json").write_text("{}")
    entry = dataclasses.replace(plan.entries[1], recipient=odd, bundle=f"q3/{odd}/links.json")
    write_plan(run_dir, DeliveryPlan(plan.run_id, (plan.entries[0], entry)))
    result = CliRunner().invoke(app, ["approve", str(run_dir), "--by", "alice"])
    assert result.exit_code == 2
    assert "\u202e" not in result.stderr
    assert "entry 2 (q3/init\\u202eech), recipient: " in result.stderr
    assert not (run_dir / "approvals.jsonl").exists()


@pytest.mark.parametrize("by", ["", "  ", "al\u202eice", "al\nice"])
def test_an_approver_name_that_is_empty_or_hides_characters_exits_2(run_dir: Path, by: str) -> None:
    """--by must be a visible name: empty, a newline or a bidi override is refused."""
    result = CliRunner().invoke(app, ["approve", str(run_dir), "--by", by])
    assert result.exit_code == 2
    assert "--by" in result.stderr and "\u202e" not in result.stderr
    assert not (run_dir / "approvals.jsonl").exists()
