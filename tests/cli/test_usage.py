"""``sharebatch usage`` on the command line, over a run folder made by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.usage_run import UsageRun, usage_run, write_logs


@pytest.fixture
def run(tmp_path: Path) -> UsageRun:
    """The hand-made run of tests/support/usage_run.py, issued two days ago."""
    return usage_run(tmp_path / "out", datetime.now(UTC))


def test_table_on_stdout_and_exit_0_without_signals(run: UsageRun, tmp_path: Path) -> None:
    """A recipient row each, with its counts; the summary line on stderr; exit 0."""
    logs = write_logs(tmp_path / "logs", "log", [run.line("c", run.issued + timedelta(hours=1))])
    result = CliRunner().invoke(app, ["usage", str(run.run_dir), "--access-logs", str(logs)])
    assert result.exit_code == 0, result.stderr
    header, globex, initech = result.stdout.splitlines()
    assert header.split() == [
        "recipient", "links", "used", "unused", "downloads", "partial", "sent", "refused",
        "first", "last", "ips", "agents", "complete",
    ]  # fmt: skip
    assert globex.split()[:7] == ["q3/globex", "6", "0", "6", "0", "0", "0"]
    assert initech.split()[:5] == ["q3/initech", "1", "1", "0", "1"]
    assert initech.split()[-1] == "yes"
    assert "1 log line: 1 ours, 0 other, 0 bad; 0 leak signals" in result.stderr
    assert (run.run_dir / "usage.json").is_file()


def test_leak_signals_are_listed_escaped_and_exit_1(run: UsageRun, tmp_path: Path) -> None:
    """A forged id holding a terminal escape is shown escaped, with its signal; exit 1."""
    t = run.issued + timedelta(hours=1)
    logs = write_logs(tmp_path / "logs", "log", [run.line("c", t, link_id="evil\x1b[2J")])
    result = CliRunner().invoke(app, ["usage", str(run.run_dir), "--access-logs", str(logs)])
    assert result.exit_code == 1, result.stderr
    assert "\x1b" not in result.stdout
    assert "leak signals: 1" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if "malformed_id" in line]
    assert "evil\\x1b[2J" in row and "malformed ids" in row


def test_bad_lines_are_named_on_stderr_and_exit_2(run: UsageRun, tmp_path: Path) -> None:
    """A line that does not parse: its file and line on stderr, usage.json written, exit 2."""
    logs = write_logs(tmp_path / "logs", "x.log", [run.line("c", run.issued), "not a record"])
    result = CliRunner().invoke(app, ["usage", str(run.run_dir), "--access-logs", str(logs)])
    assert result.exit_code == 2
    assert f"sharebatch: {logs / 'x.log'}:2: not an S3 server access log record" in result.stderr
    assert json.loads((run.run_dir / "usage.json").read_text())["lines"]["bad"] == 1


def test_bad_command_lines_exit_2_and_write_nothing(run: UsageRun, tmp_path: Path) -> None:
    """A SOURCE that is no folder, a folder that is no run, --max-networks 0: exit 2, nothing
    written."""
    logs = write_logs(tmp_path / "logs", "log", [run.line("c", run.issued)])
    cases = [
        ["usage", str(run.run_dir), "--access-logs", str(tmp_path / "nowhere")],
        ["usage", str(tmp_path), "--access-logs", str(logs)],
        ["usage", str(run.run_dir), "--access-logs", str(logs), "--max-networks", "0"],
        ["usage", str(run.run_dir)],
    ]
    for args in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.stderr)
    assert not (run.run_dir / "usage.json").exists()
    assert not (run.run_dir / "usage.csv").exists()


def test_metrics_file_is_written(run: UsageRun, tmp_path: Path) -> None:
    """--metrics-file: the gauges are written beside the run's outputs."""
    logs = write_logs(tmp_path / "logs", "log", [run.line("c", run.issued)])
    metrics = tmp_path / "usage.prom"
    args = ["usage", str(run.run_dir), "--access-logs", str(logs), "--metrics-file", str(metrics)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert 'sharebatch_usage_downloads{run_id="' in metrics.read_text()


def test_a_long_forged_id_is_cut_in_the_table(run: UsageRun, tmp_path: Path) -> None:
    """A 60,000-character forged id and 200 well-formed forged ids: every cell is cut to
    CELL_WIDTH, so the table stays a few hundred bytes a row."""
    from sharebatch.cli.usage import CELL_WIDTH

    t = run.issued + timedelta(hours=1)
    lines = [run.line("c", t, link_id="f" * 60_000)]
    lines += [run.line("c", t, link_id=f"{i:016x}") for i in range(200)]
    logs = write_logs(tmp_path / "logs", "log", lines)
    result = CliRunner().invoke(app, ["usage", str(run.run_dir), "--access-logs", str(logs)])
    assert result.exit_code == 1, result.stderr
    assert "leak signals: 201" in result.stdout
    assert len(result.stdout) < 100_000
    (row,) = [line for line in result.stdout.splitlines() if "malformed_id" in line]
    assert "f" * 32 + "\u2026" in row and "f" * 33 not in row
    assert max(len(line) for line in result.stdout.splitlines()) <= 6 * (CELL_WIDTH + 2)
    assert "characte\u2026" in row  # the detail, cut at CELL_WIDTH


def test_a_recipient_without_ids_reads_unknown(run: UsageRun, tmp_path: Path) -> None:
    """Rows without an id: the complete column says unknown, not yes or no."""
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    data = json.loads(bundle.read_text())
    data["links"][0]["link_id"] = None
    bundle.write_text(json.dumps(data))
    logs = write_logs(tmp_path / "logs", "log", [run.line("a", run.issued + timedelta(hours=1))])
    result = CliRunner().invoke(app, ["usage", str(run.run_dir), "--access-logs", str(logs)])
    assert result.exit_code == 0, result.stderr
    (initech,) = [line for line in result.stdout.splitlines() if "q3/initech" in line]
    assert initech.split()[-1] == "unknown"
