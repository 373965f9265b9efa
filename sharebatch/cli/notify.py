"""``sharebatch notify``: mail each recipient their bundle (and ``run --notify`` reuses it).

One line per message on stdout (sent, already sent, written with ``--dry-run``), failures
and recipients left out on stderr, then a count. Recipient ids, addresses and server replies
come from others: every line goes out through ``visible``. No link is ever printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import FormatOpt, LogFormat, QuietOpt, VerboseOpt, setup_logging
from sharebatch.delivery.notify import DEFAULT_CONCURRENCY, NotifyReport, Outcome
from sharebatch.delivery.notify import notify as notify_run
from sharebatch.units import counted
from sharebatch.visible import visible


def notify(
    run_dir: Annotated[Path, typer.Argument(help="The run folder, OUT/<run-id>.")],
    concurrency: Annotated[
        int, typer.Option(help="SMTP connections at once.", min=1, max=64)
    ] = DEFAULT_CONCURRENCY,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Write each message to OUT/<run-id>/outbox/ and send nothing."
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", metavar="RECIPIENT", help="Only this recipient (id or job/id); repeatable."
        ),
    ] = None,
    resend: Annotated[
        list[str] | None,
        typer.Option(
            "--resend",
            metavar="RECIPIENT",
            help="Send to this recipient again even if sent before; repeatable.",
        ),
    ] = None,
    strict_webhook: StrictWebhookOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Mail each recipient of a run their bundle: the link to their page, or their links.

    Idempotent: what deliveries.jsonl records as sent is not sent again (--resend to send
    again on purpose). Settings come from the manifest's notify: section, as the run recorded
    them in delivery.json; the SMTP password from SHAREBATCH_SMTP_PASSWORD (or password_env).

    Example: sharebatch notify bundles/20261001T060000Z-3f9a --dry-run

    Example: sharebatch notify bundles/20261001T060000Z-3f9a --only globex --resend globex

    With notify.require_approval, only bundles approved (sharebatch approve) and unchanged
    since are sent; the others are held, each named with why. --dry-run writes them all.

    Exit codes: 0 every message sent (or sent before); 1 some recipient failed, or was held
    for approval (named), or (with --strict-webhook) the notify.webhook failed; 2 bad input
    (no delivery.json, a recipient without an address, an unset password variable, an
    unknown --only), nothing sent; 75 another notify of this run is sending.
    """
    setup_logging(verbose, quiet, log_format)
    report = notify_run(
        run_dir, concurrency=concurrency, dry_run=dry_run, only=only or (), resend=resend or ()
    )
    render_notify(report, run_dir)
    raise typer.Exit(max(report.exit_code, webhook_exit(report.webhook_errors, strict_webhook)))


StrictWebhookOpt = Annotated[
    bool,
    typer.Option("--strict-webhook", help="Exit 1 when the notify.webhook could not be posted to."),
]


def webhook_exit(errors: Sequence[str], strict: bool) -> int:
    """Each webhook failure on stderr; 1 when there was one and ``strict``, else 0."""
    for error in errors:
        typer.echo(f"sharebatch: {visible(error)}", err=True)
    return 1 if errors and strict else 0


def render_notify(report: NotifyReport, run_dir: Path) -> None:
    """The report: one line per message on stdout, problems on stderr, counts last."""
    for outcome in report.outcomes:
        if outcome.status == "failed":
            typer.echo(f"sharebatch: {_who(outcome)}: failed: {visible(outcome.reply)}", err=True)
        else:
            typer.echo(_line(outcome))
    for name in report.left_out:
        typer.echo(f"sharebatch: {visible(name)}: left out (notify: false)", err=True)
    for name in report.unconfigured:
        typer.echo(f"sharebatch: {visible(name)}: no notify: settings, not mailed", err=True)
    approve = f"sharebatch approve {visible(str(run_dir))}"
    # A dry run writes held messages too (for the review): it says what a send would hold.
    held = "would be held" if report.outbox else "held"
    for name, why in report.held:
        typer.echo(f"sharebatch: {visible(name)}: {held}: {why} ({approve})", err=True)
    counts = report.counts()
    parts = [counted(n, "message") + f" {status}" for status, n in sorted(counts.items())]
    if report.outbox:
        parts.append(f"outbox {visible(report.outbox)}")
    failed = report.failed
    if failed:
        names = ", ".join(dict.fromkeys(_who(o) for o in failed))
        parts.append(f"failed: {names}")
    if report.held:
        parts.append(f"{held}: {', '.join(visible(name) for name, _ in report.held)}")
    typer.echo(
        f"sharebatch: notify {visible(report.run_id)}: {'; '.join(parts) or 'nothing'}", err=True
    )


def _who(outcome: Outcome) -> str:
    return visible(f"{outcome.job}/{outcome.recipient}")


def _line(outcome: Outcome) -> str:
    where = visible(outcome.path) if outcome.path else visible(", ".join(outcome.addresses))
    return f"{outcome.status:<12} {_who(outcome)}  {where}  {visible(outcome.message_id)}"
