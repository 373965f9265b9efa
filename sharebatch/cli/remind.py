"""``sharebatch remind``: renew the links about to end and mail each recipient a reminder.

One line per entry on stdout (what became of it, and the renewal it is about), then one per
message handed over; failures on stderr, then a count. Recipient ids, file names and server
replies come from others: every line goes out through ``visible``. No link is ever printed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    FormatOpt,
    LogFormat,
    ProfileOpt,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.delivery.notify import DEFAULT_CONCURRENCY
from sharebatch.delivery.remind import RemindReport
from sharebatch.delivery.remind import remind as remind_run
from sharebatch.errors import UsageError
from sharebatch.manifest.periods import parse_duration
from sharebatch.models import MAX_EXPIRES_IN, Connection
from sharebatch.units import counted
from sharebatch.visible import visible


def remind(
    run_dir: Annotated[Path, typer.Argument(help="The run folder, OUT/<run-id>.")],
    within: Annotated[
        str,
        typer.Option(
            "--within",
            metavar="DURATION",
            help="Renew and remind when a link ends within this time: 48h, 2d, P2D.",
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what is due; renew, store and send nothing."),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", metavar="RECIPIENT", help="Only this recipient (id or job/id); repeatable."
        ),
    ] = None,
    only_unused: Annotated[
        bool,
        typer.Option(
            "--only-unused",
            help="Only recipients who have not downloaded every file, by the run's usage.json"
            " (run sharebatch usage first).",
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(help="SMTP connections at once.", min=1, max=64)
    ] = DEFAULT_CONCURRENCY,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint; overrides the bundles'.")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the bundles'.")] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Renew a run's links that end within --within and mail each renewal's reminder once.

    Only recipients already notified are reminded. A bundle with a link or upload slot ending
    within the window is renewed (as renew does); every newest renewal without a sent
    reminder gets one: a fresh recipient page (delivery: page) and a "Reminder:" mail saying
    until when the links work. Reminders need no new approval: a renewal holds no file its
    bundle did not. Idempotent: a second remind renews and sends nothing.

    Example: sharebatch remind bundles/20261001T060000Z-3f9a --within 48h

    Example: sharebatch remind bundles/20261001T060000Z-3f9a --within 2d --dry-run

    Example: sharebatch remind bundles/20261001T060000Z-3f9a --within 48h --only-unused

    --only-unused reads the receipts (usage.json, written by sharebatch usage): a recipient
    it says downloaded every file is left alone; the others, and any it does not list, are
    reminded as usual. An old usage.json can only remind someone who has finished since,
    never skip someone who has not; the line "receipts as of" says how old it is.

    Exit codes: 0 every reminder sent (or none due); 1 a renewal, a page or a message failed
    (named); 2 bad input (no delivery.json, an unknown --only, a bad --within, --only-unused
    without the run's usage.json); 3 no usable credentials; 75 another remind (or a notify)
    of this run is running.
    """
    setup_logging(verbose, quiet, log_format)
    report = remind_run(
        run_dir,
        within=_window(within),
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
        dry_run=dry_run,
        only=only or (),
        concurrency=concurrency,
        only_unused=only_unused,
    )
    render_remind(report)
    raise typer.Exit(report.exit_code)


def _window(value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(value, MAX_EXPIRES_IN))
    except ValueError as exc:
        raise UsageError(f"--within: {exc}") from None


def render_remind(report: RemindReport) -> None:
    """Each entry's step on stdout (failures on stderr), then the mailing, then counts."""
    for step in report.steps:
        about = f"  {visible(step.renewal)}" if step.renewal else ""
        if step.action == "failed":
            typer.echo(
                f"sharebatch: {visible(step.name)}: failed: {visible(step.detail)}", err=True
            )
        else:
            typer.echo(f"{step.action:<16} {visible(step.name)}{about}")
    for problem in report.problems:
        typer.echo(f"sharebatch: {problem}", err=True)  # escaped where it was made
    outcomes = report.mail.outcomes if report.mail is not None else ()
    for outcome in outcomes:
        who = visible(f"{outcome.job}/{outcome.recipient}")
        if outcome.status == "failed":
            typer.echo(f"sharebatch: {who}: reminder failed: {visible(outcome.reply)}", err=True)
        else:
            to = visible(", ".join(outcome.addresses))
            typer.echo(f"{outcome.status:<16} {who}  {to}  {visible(outcome.message_id)}")
    counts: dict[str, int] = {}
    for step in report.steps:
        counts[step.action] = counts.get(step.action, 0) + 1
    parts = [f"{counted(n, 'recipient')} {action}" for action, n in sorted(counts.items())]
    sent = sum(o.status == "sent" for o in outcomes)
    parts.append(counted(sent, "reminder") + " sent")
    failed = dict.fromkeys(visible(f"{o.job}/{o.recipient}") for o in report.failed)
    failed.update(dict.fromkeys(visible(s.name) for s in report.steps if s.action == "failed"))
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if report.receipts_at is not None:
        parts.append(f"receipts as of {visible(report.receipts_at)}")
    typer.echo(f"sharebatch: remind {visible(report.run_id)}: {'; '.join(parts)}", err=True)
