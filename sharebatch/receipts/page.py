"""The review page's receipts: who downloaded what, and which links leaked, from usage.json.

``sharebatch usage`` joins S3's access logs to a run's links and writes ``usage.json``; this
module turns that into the receipts block of the run's review page (``OUT/<run-id>/index.html``),
between the ``RECEIPTS_START`` / ``RECEIPTS_END`` marker lines that ``run/review.refresh_block``
rewrites: a note on what the logs covered, the leak signals, a chart of downloads per day per
recipient, and a table per recipient.

The page's Content-Security-Policy allows only its own stylesheet and script (by hash), so
the chart is inline SVG drawn with presentation attributes only (``fill``, ``font-size``...):
a ``style`` attribute or element would be refused, and nothing is loaded from anywhere.
Everything usage.json says that came from outside (recipient ids, keys, the logs' addresses
and agents in a signal's detail) is shown through ``visible`` and HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from math import ceil
from pathlib import Path
from typing import Any

from sharebatch.run.review import (
    RECEIPTS,
    RECEIPTS_END,
    RECEIPTS_START,
    refresh_block,
    shown,
    table_open,
    table_row,
)
from sharebatch.units import counted, human_size

MAX_DAYS = 62  # the chart's last days; two months of daily bars still read at 640 px
MAX_SERIES = 8  # recipients drawn in a colour of their own; the rest are "others"
# Colour-blind-safe (Okabe-Ito), then grey for the others.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
OTHERS_COLOUR = "#999999"

_WIDTH, _PLOT_HEIGHT, _LEFT, _TOP, _LEGEND_ROW = 720, 160, 48, 12, 18
_SIGNAL_KINDS = {
    "many_networks": "many networks",
    "used_after_renewal": "used after renewal",
    "id_misused": "id used on another object",
    "unknown_id": "unknown id",
    "malformed_id": "malformed id",
}
_NUMERIC = ("Downloads", "Partial", "Bytes", "IPs", "Unused links", "Requests", "Networks")


def refresh_receipts(path: Path, usage: Mapping[str, Any]) -> str | None:
    """Rewrite the receipts block of the review page at ``path`` from ``usage`` (usage.json's
    content); the page's new sha256, or None (page untouched) when it is not a review page."""
    return refresh_block(path, RECEIPTS, receipts_block(usage))


def receipts_block(usage: Mapping[str, Any]) -> str:
    """The receipts section, its marker lines included, for usage.json's content ``usage``."""
    recipients: Sequence[Mapping[str, Any]] = usage["recipients"]
    complete = sum(bool(r["complete"]) for r in recipients)
    lines = usage["lines"]
    bad = (
        f' <span class="note">{int(lines["bad"])} log lines did not parse (usage.json lists'
        " them).</span>"
        if lines["bad"]
        else ""
    )
    parts = [
        f"{RECEIPTS_START}\n<h2>Receipts</h2>\n"
        f'<p id="receipts-note">From S3 server access logs, as of {shown(usage["generated_at"])}'
        f" (S3 delivers them best effort, within hours): {int(lines['ours'])} of"
        f" {int(lines['total'])} log lines were this run's. {complete} of {len(recipients)}"
        f" recipients downloaded every file.{bad}</p>\n",
        *_signals(usage["signals"]),
        *_chart(usage["daily"]),
        *_recipients(recipients),
        f"{RECEIPTS_END}\n",
    ]
    return "".join(parts)


def _signals(signals: Sequence[Mapping[str, Any]]) -> list[str]:
    if not signals:
        return ['<h3>Leak signals</h3>\n<p id="signals-none">No leak signals.</p>\n']
    columns = ["Signal", "Job", "Recipient", "Key", "Link id", "Requests", "Networks", "First"]
    parts = [
        '<h3>Leak signals</h3>\n<p class="note" id="signals-note">'
        f"{counted(len(signals), 'leak signal')}: a link used from many networks, an old link"
        " used after its renewal, or an id this run never issued.</p>\n",
        table_open("signals", [*columns, "Detail"], _NUMERIC),
    ]
    for signal in signals:
        kind = _SIGNAL_KINDS.get(str(signal["kind"]), str(signal["kind"]))
        cells: list[tuple[str, str, str | None]] = [
            ("note", shown(kind), None),
            ("", shown(signal["job"]), None),
            ("", shown(signal["recipient"]), None),
            ("key", shown(signal["key"]), None),
            ("", shown(signal["link_id"]), None),
            ("num", shown(signal["requests"]), str(int(signal["requests"]))),
            ("num", shown(signal["networks"]), str(int(signal["networks"]))),
            ("", shown(signal["first"]), None),
            ("", shown(signal["detail"]), None),
        ]
        search = " ".join(str(signal[k] or "") for k in ("kind", "job", "recipient", "key"))
        parts.append(table_row(cells, search))
    parts.append("</tbody></table>\n")
    return parts


def _recipients(recipients: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = ["Job", "Recipient", "Downloads", "Partial", "Bytes", "First", "Last", "IPs"]
    parts = [
        "<h3>Per recipient</h3>\n",
        table_open("receipts", [*columns, "Unused links", "Complete"], _NUMERIC),
    ]
    for r in recipients:
        complete = bool(r["complete"])
        cells: list[tuple[str, str, str | None]] = [
            ("", shown(r["job"]), None),
            ("", shown(r["recipient"]), None),
            ("num", shown(r["downloads"]), str(int(r["downloads"]))),
            ("num", shown(r["partial"]), str(int(r["partial"]))),
            ("num", shown(human_size(int(r["bytes_sent"]))), str(int(r["bytes_sent"]))),
            ("", shown(r["first"] or "never"), None),
            ("", shown(r["last"] or "never"), None),
            ("num", shown(r["remote_ips"]), str(int(r["remote_ips"]))),
            ("num", f"{int(r['unused'])} of {int(r['links'])}", str(int(r["unused"]))),
            # Rows without an id: the logs cannot say (never "no", which reads as a fact).
            (
                "complete-yes" if complete else "note",
                "unknown" if r.get("without_id") else "yes" if complete else "no",
                None,
            ),
        ]
        state = "complete" if complete else "incomplete"
        parts.append(table_row(cells, f"{r['job']} {r['recipient']} {state}"))
    parts.append("</tbody></table>\n")
    return parts


def _chart(daily: Sequence[Mapping[str, Any]]) -> list[str]:
    """Downloads per day, one stacked bar a day, one colour per recipient (the most active
    ``MAX_SERIES``; the rest share grey), with a legend; only the last ``MAX_DAYS`` days."""
    counts: dict[tuple[str, str], dict[date, int]] = {}
    for entry in daily:
        downloads = int(entry["downloads"])
        if downloads > 0:
            by_day = counts.setdefault((str(entry["job"]), str(entry["recipient"])), {})
            day = date.fromisoformat(str(entry["day"]))
            by_day[day] = by_day.get(day, 0) + downloads
    if not counts:
        return ['<h3>Downloads per day</h3>\n<p id="chart-none">No downloads yet.</p>\n']
    every_day = [day for by_day in counts.values() for day in by_day]
    last = max(every_day)
    first = max(min(every_day), last - timedelta(MAX_DAYS - 1))
    days = [first + timedelta(n) for n in range((last - first).days + 1)]
    ranked = sorted(counts, key=lambda key: (-sum(counts[key].values()), key))
    named, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
    # (label, colour, downloads by day), drawn bottom up in this order.
    series: list[tuple[str, str, dict[date, int]]] = [
        (f"{job}/{recipient}", PALETTE[n], counts[(job, recipient)])
        for n, (job, recipient) in enumerate(named)
    ]
    if rest:
        others: dict[date, int] = {}
        for key in rest:
            for day, n in counts[key].items():
                others[day] = others.get(day, 0) + n
        series.append((f"{len(rest)} others", OTHERS_COLOUR, others))
    tallest = max(sum(s[2].get(day, 0) for s in series) for day in days)
    slot = (_WIDTH - _LEFT - 8) / len(days)
    bar = max(1.0, slot * 0.7)
    bottom = _TOP + _PLOT_HEIGHT
    legend_top = bottom + 30
    height = legend_top + _LEGEND_ROW * len(series) + 4
    title = "Downloads per day per recipient"
    parts = [
        "<h3>Downloads per day</h3>\n",
        f'<svg id="receipts-chart" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' aria-labelledby="receipts-chart-title" width="{_WIDTH}" height="{height}"'
        f' viewBox="0 0 {_WIDTH} {height}" font-family="system-ui, sans-serif" font-size="11">'
        f'<title id="receipts-chart-title">{title}</title>\n',
        f'<text class="axis" x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">{tallest}</text>'
        f'<text class="axis" x="{_LEFT - 6}" y="{bottom}" text-anchor="end">0</text>'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_WIDTH - 8}" y2="{bottom}" stroke="#555"'
        ' stroke-width="1"/>\n',
    ]
    every = ceil(len(days) / 12)  # at most about a dozen day labels
    for n, day in enumerate(days):
        x = _LEFT + n * slot + (slot - bar) / 2
        stacked = 0
        for label, colour, by_day in series:
            downloads = by_day.get(day, 0)
            if not downloads:
                continue
            top = bottom - (stacked + downloads) * _PLOT_HEIGHT / tallest
            high = downloads * _PLOT_HEIGHT / tallest
            tip = f"{day.isoformat()} {label}: {downloads} downloads"
            parts.append(
                f'<rect class="bar" data-day="{day.isoformat()}" data-series="{shown(label)}"'
                f' data-downloads="{downloads}" x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}"'
                f' height="{high:.1f}" fill="{colour}"><title>{shown(tip)}</title></rect>\n'
            )
            stacked += downloads
        if (len(days) - 1 - n) % every == 0:  # counted from the last day, always labelled
            parts.append(
                f'<text class="day" x="{x + bar / 2:.1f}" y="{bottom + 14}"'
                f' text-anchor="middle">{day.strftime("%m-%d")}</text>\n'
            )
    for n, (label, colour, by_day) in enumerate(series):
        y = legend_top + n * _LEGEND_ROW
        parts.append(
            f'<rect class="swatch" x="{_LEFT}" y="{y}" width="12" height="12" fill="{colour}"/>'
            f'<text class="legend" x="{_LEFT + 18}" y="{y + 10}">{shown(label)}'
            f" ({sum(by_day.values())})</text>\n"
        )
    parts.append("</svg>\n")
    if days[0] != min(every_day):
        parts.append(
            f'<p class="note" id="chart-cut">The chart shows the last {MAX_DAYS} days;'
            " the table counts them all.</p>\n"
        )
    return parts
