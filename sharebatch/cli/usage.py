"""``sharebatch usage``: who downloaded what, from where, and which links leaked.

Thin over ``receipts/usage``: a table per recipient and the leak signals on stdout, the log
lines that did not parse on stderr (the first ``BAD_LINES_SHOWN``; all of them are in
usage.json), then one line saying what was read and written. Ids, keys, file names and
recipient names come from others (a forged id is anybody's text): every cell goes out
through ``visible``. No link is ever printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from sharebatch.cli.app import (
    FormatOpt,
    LogFormat,
    MetricsFileOpt,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.models import Connection
from sharebatch.receipts.sources import parse_source
from sharebatch.receipts.usage import UsageReport
from sharebatch.receipts.usage import usage as read_usage
from sharebatch.units import counted, human_size
from sharebatch.visible import visible

BAD_LINES_SHOWN = 20
CELL_WIDTH = 60  # a cell is cut to this many characters: one forged id widens no table

_COLUMNS = (
    "recipient",
    "links",
    "used",
    "unused",
    "downloads",
    "partial",
    "sent",
    "refused",
    "first",
    "last",
    "ips",
    "agents",
    "complete",
)


def usage(
    run_dir: Annotated[Path, typer.Argument(help="The run folder, OUT/<run-id>.")],
    access_logs: Annotated[
        list[str],
        typer.Option(
            "--access-logs",
            metavar="SOURCE",
            help="S3 server access logs: a folder of log files or s3://bucket/prefix/; repeatable.",
        ),
    ],
    max_networks: Annotated[
        int,
        typer.Option(
            min=1, help="A link used from more /24 (IPv6: /48) networks than this is a leak."
        ),
    ] = 3,
    metrics_file: MetricsFileOpt = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint for s3:// sources (S3-compatible stores).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile for s3:// sources.")] = None,
    region: Annotated[str | None, region_option("Region of the s3:// sources' bucket.")] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Receipts: join S3 server access logs to a run's links, per recipient and per link.

    Every link carries its own id (x-sharebatch-id), which S3 writes into each request's log
    record. usage counts downloads (2xx GETs; 206 as partial), bytes sent, first and last
    request, remote addresses and user agents, refused requests (403) and links never used,
    and flags leaks: a link used from more than --max-networks networks, an old link served
    after its renewal, a link's id used on another object, an id no run in the output folder
    issued, malformed ids. A record counts for a link only on the link's own bucket and key.
    Writes usage.json and usage.csv in the run folder and refreshes the review page's receipts.

    Example: sharebatch usage bundles/20261001T060000Z-3f9a --access-logs /var/log/s3/

    Example: sharebatch usage OUT/RUN --access-logs s3://acme-logs/q3/ --metrics-file u.prom

    Exit codes: 0 no leak signal; 1 a leak signal; 2 bad input (no run folder, a bad SOURCE:
    nothing written; log lines that do not parse: named, the rest still reported); 3 no usable
    credentials for an s3:// source.
    """
    setup_logging(verbose, quiet, log_format)
    sources = [parse_source(text) for text in access_logs]
    report = read_usage(
        run_dir,
        sources,
        max_networks=max_networks,
        metrics_file=metrics_file,
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
    )
    render_usage(report)
    raise typer.Exit(report.exit_code)


def _cell(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "\u2026"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    rows = [[_cell(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i in (0, len(row) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _recipient_row(r: dict[str, Any]) -> list[str]:
    return [
        visible(f"{r['job']}/{r['recipient']}"),
        str(r["links"]),
        str(r["used"]),
        str(r["unused"]),
        str(r["downloads"]),
        str(r["partial"]),
        human_size(r["bytes_sent"]),
        str(r["refused"]),
        r["first"] or "-",
        r["last"] or "-",
        str(r["remote_ips"]),
        str(r["user_agents"]),
        # Rows without an id: the logs cannot say whether they were downloaded.
        "unknown" if r.get("without_id") else "yes" if r["complete"] else "no",
    ]


def render_usage(report: UsageReport) -> None:
    """The recipients' table and the signals on stdout; bad lines and a count on stderr."""
    data = report.usage
    rows = [list(_COLUMNS), *(_recipient_row(r) for r in data["recipients"])]
    for line in _table(rows):
        typer.echo(line)
    signals = data["signals"]
    if signals:
        typer.echo("")
        typer.echo(f"leak signals: {len(signals)}")
        table = [["signal", "link id", "recipient", "key", "detail"]]
        for s in signals:
            who = f"{s['job']}/{s['recipient']}" if s["job"] is not None else "-"
            cells = (s["kind"], s["link_id"], who, s["key"] or "-", s["detail"])
            table.append([visible(cell) for cell in cells])
        for line in _table(table):
            typer.echo("  " + line)
    for bad in data["bad_lines"][:BAD_LINES_SHOWN]:
        where = visible(f"{bad['file']}:{bad['line']}")
        typer.echo(f"sharebatch: {where}: {visible(bad['problem'])}", err=True)
    lines = data["lines"]
    if lines["bad"] > BAD_LINES_SHOWN:
        more = lines["bad"] - BAD_LINES_SHOWN
        typer.echo(f"sharebatch: and {more} more lines that do not parse (usage.json)", err=True)
    summary = (
        f"{counted(lines['total'], 'log line')}: {lines['ours']} ours, {lines['other']} other,"
        f" {lines['bad']} bad; {counted(len(signals), 'leak signal')}"
    )
    written = ", ".join(str(path) for path in report.written)
    typer.echo(
        f"sharebatch: usage {visible(data['run_id'])}: {summary}; wrote {visible(written)}",
        err=True,
    )
