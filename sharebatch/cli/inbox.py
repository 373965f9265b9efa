"""``sharebatch inbox``: what each recipient uploaded into its slot, for the period."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    AsOfOpt,
    FormatOpt,
    LogFormat,
    MetricsFileOpt,
    ProfileOpt,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.lifecycle.inbox import Inbox, InboxEntry, inbox_gauges, read_inbox, write_inbox_csv
from sharebatch.models import Connection
from sharebatch.run.metrics import check_metrics_path, render_gauges, write_exposition
from sharebatch.scanning.clamd import DEFAULT_TIMEOUT
from sharebatch.times import iso
from sharebatch.units import counted
from sharebatch.visible import visible


def render_inbox(inbox: Inbox) -> str:
    """One block per slot: a heading with the counts, then one line per file.

    Names, prefixes and errors come from whoever uploaded or answered: each line goes out
    through ``visible``, so no control or bidi character reaches the terminal.
    """
    lines = [f"upload slots of {inbox.manifest} as of {inbox.as_of.isoformat()}"]
    for found in inbox.slots:
        head = f"{found.job}/{found.recipient}  {found.bucket}/{found.slot.prefix}"
        if found.error is not None:
            lines.append(f"{head}  ERROR {found.error}")
            continue
        if found.slot.keys:
            expected = counted(len(found.slot.keys), "expected file")
            lines.append(f"{head}  {found.returned} of {expected}")
        else:
            lines.append(f"{head}  {counted(found.received, 'file')}")
        for entry in found.entries:
            size = "" if entry.size is None else f"{entry.size} B"
            when = iso(entry.last_modified) if entry.last_modified else ""
            verdict = ""
            if inbox.scanned and found.scan is not None:
                verdict = f"{entry.scan.status if entry.scan else '':<17} "
            line = f"  {entry.status:<10} {verdict}{size:>14}  {when:<20}  {entry.name}"
            lines.append(line.rstrip())
            if entry.scan is not None and entry.scan.status != "clean":
                lines.append(f"      {_why(entry)}")
    return "\n".join(map(visible, lines))


def _why(entry: InboxEntry) -> str:
    """What to know about a file that is not clean: its signature, why, where it went."""
    assert entry.scan is not None
    said = [entry.scan.signature or "", entry.scan.detail or ""]
    if entry.quarantined_to:
        said.append(f"moved to {entry.quarantined_to}")
    return "; ".join(part for part in said if part)


def inbox(
    manifest: Annotated[Path, typer.Argument(help="The manifest whose upload slots to list.")],
    as_of: AsOfOpt = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the list to this CSV file (0600).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    scan: Annotated[
        bool,
        typer.Option(
            "--scan", help="Scan each upload for malware, as the slot's upload.scan says."
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(help="With --scan: files scanned at once.", min=1, max=64)
    ] = 4,
    scan_timeout: Annotated[
        float,
        typer.Option(help="With --scan: seconds clamd may take for each step.", min=0.1),
    ] = DEFAULT_TIMEOUT,
    metrics_file: MetricsFileOpt = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the manifest.")] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = True,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """List what recipients uploaded into their slots for the period: name, size, time.

    Example: sharebatch inbox manifests/q3.yml --as-of 2026-10-01 --csv returned.csv

    Give the --as-of of the run that issued the slots: {period.*} in an
    upload prefix then names the same period.

    Statuses: received; missing (a fixed key not uploaded yet); too_large
    (over max_size, which a PUT URL cannot enforce); unexpected (not one of
    the slot's fixed keys).

    With --scan, each upload of a slot with upload.scan is also judged:
    clean; infected (moved to quarantine_prefix when set); unscanned
    (GuardDuty has not tagged it); scan_error (clamd hung, dropped, answered
    garbage, or the read broke off); too_large_to_scan (over clamd's
    StreamMaxLength). An unchanged file already tagged clean is not sent
    again. Example: sharebatch inbox manifests/signed-returns.yml --scan

    Exit codes: 0 every slot listed (with --scan: every upload clean);
    1 some slot could not be listed, or some upload is not clean;
    2 invalid manifest or options, or no upload slot (with --scan: none
    with upload.scan); 3 no usable credentials.
    """
    setup_logging(verbose, quiet, log_format)
    if metrics_file is not None:
        check_metrics_path(metrics_file)
    found = read_inbox(
        manifest,
        as_of=as_of.date() if as_of else None,
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
        scan=scan,
        scan_concurrency=concurrency,
        scan_timeout=scan_timeout,
    )
    if metrics_file is not None:
        write_exposition(metrics_file, render_gauges(inbox_gauges(found, datetime.now(UTC))))
    if csv_path is not None:
        write_inbox_csv(found, csv_path)
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_inbox(found))
    raise typer.Exit(found.exit_code)
