"""``sharebatch approve``: ops record that they reviewed a run's bundles before mailing them.

Thin: the library (``delivery/approvals``) records and checks; this prints what it recorded.
Job and recipient names, paths and the approver's name come from others: every line goes out
through ``visible``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import FormatOpt, LogFormat, QuietOpt, VerboseOpt, setup_logging
from sharebatch.delivery.approvals import ApprovalReport, report_json
from sharebatch.delivery.approvals import approve as approve_run
from sharebatch.errors import UsageError
from sharebatch.units import counted
from sharebatch.visible import visible


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (a bare container)
        raise UsageError("--by: cannot tell who is logged in; give --by NAME") from None


def render_approvals(report: ApprovalReport) -> str:
    """One line per bundle approved or left out, then a closing line."""
    lines = [
        f"approved {a.job}/{a.recipient}  bundle sha256 {a.bundle_sha256[:16]}"
        + (f"  page sha256 {a.page_sha256[:16]}" if a.page_sha256 else "")
        for a in report.approved
    ]
    lines += [f"left out (notify: false) {job}/{recipient}" for job, recipient in report.left_out]
    by = report.approved[0].by if report.approved else None
    page = "review page updated" if report.review_sha256 else "no review page to update"
    lines.append(
        f"approve: {counted(len(report.approved), 'bundle')} approved"
        + (f" by {by}" if by else "")
        + f" in run {report.run_id}; {page}; recorded in {report.path}"
    )
    return "\n".join(map(visible, lines))


def approve(
    run_dir: Annotated[Path, typer.Argument(help="The run folder: OUT/<run-id>.")],
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="NAME", help="Who approves; default: the login user."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="RECIPIENT",
            help="Approve only this recipient (all its jobs) or JOB/RECIPIENT; repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = True,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Approve a run's bundles for mailing, as they are now.

    Records the approver, the time and the sha256 of each bundle and
    of its recipient page in OUT/<run-id>/approvals.jsonl, and shows
    them on the review page. With notify.require_approval, notify
    mails only approved bundles whose bytes have not changed since.

    Example: sharebatch approve out/20261001T060000Z-3f9a --by alice --only globex

    Exit codes: 0 recorded; 2 not a run folder with a delivery plan,
    an unknown --only name, or a bundle that cannot be read.
    """
    setup_logging(verbose, quiet, log_format)
    report = approve_run(run_dir, by=by if by is not None else _login(), only=only or ())
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_approvals(report))
