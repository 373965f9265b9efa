"""What an operator sees of ``sharebatch run`` besides its logs (CLI only).

* On a terminal, a live progress display on stderr, one line per job (prefixes listed, objects
  listed, links signed). Log lines print above it. Under cron (no TTY) or with ``--quiet``
  there is none: stderr holds the log lines only.
* At the end, on a terminal (human log format) and unless ``--quiet``, a summary table on
  stderr; the same figures are in ``summary.json`` and in the ``run_finished`` log line.
  ``--log-format console`` into a file or a pipe gives console log lines only: the table and
  the progress display are drawings for a terminal.
* With ``--metrics-file``, the run's metrics (``metrics.py``), written whatever the outcome
  once the command line is valid (a crash is ``failed``, as its summary says), except a run
  the lock refused: invalid input and refused runs write nothing.
* With ``--verbose``, a crash's traceback (the cause of ``RunCrashed``), for a bug report,
  above the one error line the application prints for every ``SharebatchError``.
"""

from __future__ import annotations

import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from sharebatch.audit import scrubbed
from sharebatch.cli.app import LogFormat, setup_logging
from sharebatch.errors import Interrupted, RunCrashed, RunLocked, SharebatchError, UsageError
from sharebatch.models import RunReport, RunSummary
from sharebatch.run.metrics import RunMetrics, check_metrics_path, write_metrics
from sharebatch.run.progress import JobProgress, ProgressCallback
from sharebatch.times import parse_iso
from sharebatch.units import counted, human_size
from sharebatch.visible import visible


def summary_table(report: RunReport) -> Table:
    """Jobs, recipients, links, bytes shared, earliest expiry and failures; a total row.

    Upload slots issued get a column when there are any; keys that got no link (see
    ``select.linkable``) are named below the table.
    """
    totals = report["totals"]
    slots = totals["upload_slots"]
    table = Table(
        title=f"run {report['run_id']}: {report['status']}",
        title_justify="left",
        caption=_unlinkable_caption(report),
        caption_justify="left",
    )
    for name in ("job", "recipients", "links", "shared", "earliest expiry", "failures"):
        table.add_column(name, justify="left" if name in ("job", "earliest expiry") else "right")
    if slots:
        table.add_column("upload slots", justify="right")
    for job in report["jobs"]:
        table.add_row(
            job["name"],
            str(len(job["recipients"])),
            str(job["links"]),
            human_size(job["bytes"]),
            job["earliest_expiry"] or "-",
            str(job["failures"]),
            *([str(job["upload_slots"])] if slots else []),
        )
    table.add_section()
    table.add_row(
        counted(totals["jobs"], "job"),
        str(totals["recipients"]),
        str(totals["links"]),
        human_size(totals["bytes"]),
        totals["earliest_expiry"] or "-",
        str(totals["failures"]),
        *([str(slots)] if slots else []),
    )
    return table


_CAPTION_KEYS = 20  # the rest are in summary.json, the review page and the audit log


def _unlinkable_caption(report: RunReport) -> Text | None:
    total = report["totals"]["unlinkable"]
    if not total:
        return None
    named = [
        f"  {job['name']}/{r['id']}: {visible(key)}"
        for job in report["jobs"]
        for r in job["recipients"]
        for key in r["unlinkable"]
    ]
    lines = [f"{total} keys cannot be linked ('.' or '..' segments), so they are in no bundle:"]
    lines += named[:_CAPTION_KEYS]
    if total > len(lines) - 1:
        lines.append(f"  and {total - len(lines) + 1} more (summary.json, index.html)")
    # A Text, not a string: Rich would read '[' in a key as markup.
    return Text("\n".join(lines), style="yellow")


class RunView:
    """Context for one ``run`` command: progress while it runs, table and metrics after."""

    def __init__(
        self,
        *,
        manifest: Path,
        metrics_file: Path | None,
        dry_run: bool,
        verbose: bool,
        quiet: bool,
        log_format: LogFormat,
    ) -> None:
        self._manifest = manifest
        self._metrics_file = metrics_file
        self._dry_run = dry_run
        self._verbose = verbose
        self._logging = (verbose, quiet, log_format)
        self._console = Console(stderr=True)
        terminal = self._console.is_terminal
        self._live = terminal and not quiet
        self._table = terminal and log_format is not LogFormat.json and not quiet
        self._progress: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._started = time.monotonic()

    def __enter__(self) -> RunView:
        if self._metrics_file is not None:
            if self._dry_run:
                raise UsageError("--metrics-file records real runs; leave it out with --dry-run")
            check_metrics_path(self._metrics_file)
        if self._live:
            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[prefixes]}  {task.fields[objects]} listed"),
                TextColumn("{task.fields[links]} signed"),
                TimeElapsedColumn(),
                console=self._console,
            )
            self._progress.start()
            # Rich now stands in for sys.stderr: log lines go through it, above the display.
            setup_logging(*self._logging)
        return self

    @property
    def on_progress(self) -> ProgressCallback | None:
        return self._update if self._live else None

    def _update(self, state: JobProgress) -> None:
        assert self._progress is not None
        if state.job not in self._tasks:
            self._tasks[state.job] = self._progress.add_task(
                state.job, total=state.prefixes, prefixes="", objects="", links=""
            )
        self._progress.update(
            self._tasks[state.job],
            completed=state.prefixes_done,
            prefixes=f"{state.prefixes_done}/{counted(state.prefixes, 'prefix', 'prefixes')}",
            objects=counted(state.objects_listed, "object"),
            links=counted(state.links_signed, "link"),
        )

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            setup_logging(*self._logging)  # the real stderr again

    def finished(self, summary: RunSummary) -> None:
        """The run returned: stop the display, print the table, write the metrics."""
        self._stop()
        report = summary.report
        if self._table:
            self._console.print(summary_table(report))
        if self._metrics_file is not None:
            totals = report["totals"]
            expiry = totals["earliest_expiry"]
            self._write(
                summary.status,
                summary.exit_code,
                links=totals["links"],
                bytes=totals["bytes"],
                failures=totals["failures"],
                unlinkable=totals["unlinkable"],
                earliest_expiry=parse_iso(expiry) if expiry else None,
            )

    def _write(self, status: str, exit_code: int, **figures: Any) -> None:
        assert self._metrics_file is not None
        run = RunMetrics(
            manifest=str(self._manifest),
            status=status,
            exit_code=exit_code,
            finished_at=datetime.now(UTC),
            duration_seconds=round(time.monotonic() - self._started, 3),
            **figures,
        )
        write_metrics(self._metrics_file, run)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
        # A run that stopped early is what monitoring most needs to see. Bad input is not a
        # run and writes nothing; nor does a run refused by the lock, so that a run hung
        # holding it shows as a stale timestamp instead of fresh "errors".
        if (
            self._metrics_file is not None
            and isinstance(exc, SharebatchError)
            and not isinstance(exc, UsageError | RunLocked)
        ):
            status = "error"  # stopped early on purpose: credentials, say
            if isinstance(exc, Interrupted):
                status = "interrupted"
            elif isinstance(exc, RunCrashed):
                status = "failed"  # as summary.json and run_finished record it
            try:
                self._write(status, exc.exit_code)
            except SharebatchError as unwritten:
                # The run's own error stays the one the command ends with; this one is said too.
                typer.echo(f"sharebatch: error: {unwritten}", err=True)
        if self._verbose and isinstance(exc, RunCrashed) and exc.__cause__ is not None:
            # For a bug report; without --verbose the error line says what happened.
            # Its messages can quote keys or links: each line visible, a secret redacted.
            for block in traceback.format_exception(exc.__cause__):
                for line in block.splitlines():
                    typer.echo(scrubbed(visible(line)), err=True)
