"""``sharebatch inbox``: what each recipient uploaded into its slot, for the period."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    AsOfOpt,
    FormatOpt,
    LogFormat,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.lifecycle.inbox import Inbox, read_inbox, write_inbox_csv
from sharebatch.models import Connection
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
            lines.append(f"  {entry.status:<10} {size:>14}  {when:<20}  {entry.name}".rstrip())
    return "\n".join(map(visible, lines))


def inbox(
    manifest: Annotated[Path, typer.Argument(help="The manifest whose upload slots to list.")],
    as_of: AsOfOpt = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the list to this CSV file (0600).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile for credentials.")] = None,
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

    Exit codes: 0 every slot listed; 1 some slot could not be listed;
    2 invalid manifest or options, or no upload slot; 3 no usable credentials.
    """
    setup_logging(verbose, quiet, log_format)
    found = read_inbox(
        manifest,
        as_of=as_of.date() if as_of else None,
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
    )
    if csv_path is not None:
        write_inbox_csv(found, csv_path)
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_inbox(found))
    raise typer.Exit(found.exit_code)
