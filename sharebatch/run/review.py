"""The review page: ``OUT/<run-id>/index.html``, one self-contained file per run.

Ops open it in a browser to review a distribution before sending it out: the run's totals and
failures, every recipient with counts, size and expiry, and every file with its link, in
tables that sort by any column and filter as one types. It holds the links, so it is a bearer
secret like the bundles: written 0600 through a temporary file renamed into place.

Self-contained by construction: inline CSS and JavaScript only, and a Content-Security-Policy
that allows exactly those two (by hash) and nothing else, so the page cannot load or send
anything even if a key contained markup (every value is escaped anyway). Rows come from the
run's staged part files, so the page is written while they still exist, right after the
bundles; it lists at most ``max_rows`` files and says so plainly when there are more.

Which recipients ops approved for sending (``sharebatch approve``) changes after the run, so
that part of the page sits between two marker lines (``APPROVALS_START`` / ``APPROVALS_END``)
and ``refresh_approvals`` rewrites only it: the rest of the page was streamed from staged
files that no longer exist. The run writes it when some bundle is to be mailed (all not
approved yet); a run with nothing to mail writes the page it always did, and a refresh adds
the block after the recipients table. The states come in as plain ``ApprovalRow`` values
(delivery decides them, this module only shows them). The receipts (``sharebatch usage``;
their HTML is built in ``receipts/page.py``) are such a block too (``RECEIPTS_START`` /
``RECEIPTS_END``), after the approvals; both go through one refresher, ``refresh_block``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, TypeVar

from sharebatch.audit import get_logger
from sharebatch.files import atomic_writer
from sharebatch.models import RecipientReport, RunReport
from sharebatch.run.bundles import WrittenFile
from sharebatch.run.folder import RunFolder
from sharebatch.run.pipeline import UNLINKABLE_LISTED, Staged
from sharebatch.run.plan import Plan
from sharebatch.run.report import build_report
from sharebatch.run.write import Written
from sharebatch.units import human_size
from sharebatch.visible import visible

log = get_logger()

Item = TypeVar("Item")

MAX_ROWS = 20_000  # a browser still sorts this many rows in well under a second

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.5em 0 .4em}
.meta{color:#555}.secret{background:#fff4e5;border-left:4px solid #e8a33d;padding:.5em 1em}
.status-ok{color:#17692e}.status-partial,.status-failed,.status-denied{color:#b3261e}
dl.totals{display:grid;grid-template-columns:repeat(6,auto);gap:.2em 1.5em;width:max-content}
dl.totals dt{color:#555;font-size:.85em}dl.totals dd{margin:0;font-weight:600;grid-row:2}
table{border-collapse:collapse;width:100%;margin-bottom:1em}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}td.key{word-break:break-all}
th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
input#search{font:inherit;padding:.4em;width:min(40em,100%)}.count{color:#555;margin-left:1em}
.note{color:#b3261e}
"""

_SCRIPT = """
"use strict";
(function () {
  var search = document.getElementById("search");
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.filterable"));
  function filter() {
    var words = search.value.toLowerCase().split(/\\s+/).filter(Boolean);
    tables.forEach(function (table) {
      var rows = table.tBodies[0].rows, shown = 0;
      for (var i = 0; i < rows.length; i++) {
        var text = rows[i].getAttribute("data-search");
        var match = words.every(function (w) { return text.indexOf(w) !== -1; });
        rows[i].hidden = !match;
        if (match) { shown++; }
      }
      document.getElementById(table.id + "-count").textContent =
        shown + " of " + rows.length + " shown";
    });
  }
  function value(cell, numeric) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    return numeric ? Number(raw) : raw.toLowerCase();
  }
  function sort(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.classList.contains("num");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return {row: row, key: value(row.cells[column], numeric), i: i};
    });
    rows.sort(function (a, b) {
      var c = a.key < b.key ? -1 : a.key > b.key ? 1 : a.i - b.i;
      return ascending ? c : -c;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (r) { fragment.appendChild(r.row); });
    body.appendChild(fragment);
  }
  search.addEventListener("input", filter);
  document.querySelectorAll("table.sortable th button").forEach(function (button) {
    button.addEventListener("click", function () { sort(button.parentNode); });
  });
  filter();
})();
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


_CSP = (
    f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)


# ASCII that visible() or escape() would change, but for "&", becomes NUL (see shown).
_NOT_PLAIN_HTML = bytes(0 if b < 32 or b == 127 or b in b"<>\"'" else b for b in range(256))


def shown(value: object) -> str:
    """``value`` as page text: control, bidi and invisible characters as escapes, then
    HTML-escaped (quotes too, so it may stand in an attribute)."""
    # Keys, names and messages come from outsiders: a bidi override would reorder what the
    # reviewer reads and a NUL or U+2028 would vanish, so each is shown as an escape.
    text = "" if value is None else str(value)
    if text.isascii() and 0 not in text.encode().translate(_NOT_PLAIN_HTML):
        # The page lists up to MAX_ROWS links, seven cells each: ASCII with no control
        # character is its own visible() text, and with no <>"' escape() only changes "&"
        # (a test compares this with the general path).
        return text.replace("&", "&amp;")
    return escape(visible(text), quote=True)


_e = shown


def table_row(cells: list[tuple[str, str, str | None]], search: str) -> str:
    """One ``<tr>``: cells are (class, html, sort value); ``search`` is its lowercased text."""
    tds = "".join(
        f'<td class="{cls}"'
        + (f' data-sort="{_e(key)}"' if key is not None else "")
        + f">{html}</td>"
        for cls, html, key in cells
    )
    return f'<tr data-search="{_e(search.lower())}">{tds}</tr>\n'


_NUMERIC = ("Links", "Size", "Max size")


def _head(columns: list[str], numeric: Collection[str]) -> str:
    ths = "".join(
        f'<th class="{"num" if name in numeric else ""}"><button type="button">{name}</button></th>'
        for name in columns
    )
    return f"<thead><tr>{ths}</tr></thead>"


def table_open(table_id: str, columns: list[str], numeric: Collection[str] = _NUMERIC) -> str:
    """A sortable, filterable table's opening (and its "n of m shown" count) up to ``<tbody>``;
    the columns named in ``numeric`` sort as numbers."""
    return (
        f'<p><span class="count" id="{table_id}-count"></span></p>\n'
        f'<table id="{table_id}" class="sortable filterable">{_head(columns, numeric)}<tbody>\n'
    )


def _header(report: RunReport) -> Iterator[str]:
    totals = report["totals"]
    status = report["status"]
    manifest = report["manifest"]
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>sharebatch review {_e(report['run_id'])}</title>\n"
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>Run {_e(report['run_id'])}: "
        f'<span class="status-{_e(status)}" id="status">{_e(status)}</span></h1>\n'
        f'<p class="meta">manifest {_e(manifest["path"])} (sha256 {_e(manifest["sha256"][:12])}'
        f"), as of {_e(manifest['as_of'])}, started {_e(report['started_at'])}</p>\n"
        '<p class="secret">Every link on this page works for anyone who has it until it '
        "expires. Review here; send each recipient only their own bundle.</p>\n"
    )
    items = [
        ("Jobs", totals["jobs"]),
        ("Recipients", totals["recipients"]),
        ("Links", totals["links"]),
        ("Size", human_size(totals["bytes"])),
        ("Earliest expiry", totals["earliest_expiry"] or "none"),
        ("Failures", totals["failures"]),
    ]
    yield (
        '<dl class="totals">'
        + "".join(f"<dt>{name}</dt><dd>{_e(value)}</dd>" for name, value in items)
        + "</dl>\n"
    )
    if report["failures"]:
        yield "<h2>Failures</h2>\n<ul>\n"
        for failure in report["failures"]:
            if failure["kind"] == "prefix":
                where = f"{failure['bucket']}/{failure['prefix']}"
            elif failure["kind"] == "page":
                where = f"{failure['job']}/{failure['recipient']} (recipient page)"
            else:
                where = failure["job"]
            text = f"{where}: {failure['error']}: {failure['message']}"
            yield f'<li class="note">{_e(text)}</li>\n'
        yield "</ul>\n"
    yield (
        '<h2>Search</h2>\n<input id="search" type="search" autocomplete="off" '
        'placeholder="Filter by job, recipient, name, email or key" aria-label="Filter rows">\n'
    )


def _recipients(report: RunReport, people: Mapping[tuple[str, str], str]) -> Iterator[str]:
    yield "<h2>Recipients</h2>\n"
    yield table_open(
        "recipients", ["Job", "Recipient", "Contact", "Links", "Size", "Expires", "Bundle"]
    )
    for job in report["jobs"]:
        for r in job["recipients"]:
            contact = people.get((job["name"], r["id"]), "")
            bundle = r["bundle"] or "no bundle (see failures)"
            cells = [
                ("", _e(job["name"]), None),
                ("", _e(r["id"]), None),
                ("", _e(contact), None),
                ("num", _e(r["links"]), str(r["links"])),
                ("num", _e(human_size(r["bytes"])), str(r["bytes"])),
                ("", _e(r["expires_at"] or ""), None),
                ("", _e(bundle), None),
            ]
            yield table_row(cells, f"{job['name']} {r['id']} {contact}")
    yield "</tbody></table>\n"


# Outsiders' text on the page is escaped (``<`` becomes ``&lt;``), so no key or name can
# forge these lines; each stands alone on its line so a block can be found line by line.
APPROVALS_START = "<!-- sharebatch:approvals -->"
APPROVALS_END = "<!-- /sharebatch:approvals -->"
RECEIPTS_START = "<!-- sharebatch:receipts -->"
RECEIPTS_END = "<!-- /sharebatch:receipts -->"


@dataclass(frozen=True, slots=True)
class Block:
    """A part of the review page rewritten after the run, between its two marker lines."""

    start: str
    end: str


APPROVALS = Block(APPROVALS_START, APPROVALS_END)
RECEIPTS = Block(RECEIPTS_START, RECEIPTS_END)
# Where the blocks sit, in this order, right after the recipients table; a page without one
# gets it there, after the blocks that come before it.
BLOCKS = (APPROVALS, RECEIPTS)


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """One bundle to be mailed as the approvals table shows it.

    ``state`` is "approved", "not approved" or "changed since approval"; ``by`` and ``at``
    name the latest approval, if any; ``required`` says whether ``notify`` waits for it.
    """

    job: str
    recipient: str
    state: str
    required: bool
    by: str | None = None
    at: str | None = None


def approvals_block(rows: Sequence[ApprovalRow]) -> str:
    """The approvals section between its marker lines; only the markers when ``rows`` is empty."""
    if not rows:
        return f"{APPROVALS_START}\n{APPROVALS_END}\n"
    approved = sum(row.state == "approved" for row in rows)
    note = (
        " notify mails only approved bundles whose bytes are unchanged since approval"
        " (notify.require_approval)."
        if any(row.required for row in rows)
        else ""
    )
    parts = [
        f"{APPROVALS_START}\n<h2>Approvals</h2>\n"
        f'<p id="approvals-note">{approved} of {len(rows)} bundles to be mailed are approved '
        f"(sharebatch approve).{note}</p>\n",
        table_open("approvals", ["Job", "Recipient", "Approval", "Required", "By", "At"]),
    ]
    for row in rows:
        cells: list[tuple[str, str, str | None]] = [
            ("", _e(row.job), None),
            ("", _e(row.recipient), None),
            (f"approval-{row.state.replace(' ', '-')}", _e(row.state), None),
            ("", "yes" if row.required else "no", None),
            ("", _e(row.by or ""), None),
            ("", _e(row.at or ""), None),
        ]
        parts.append(table_row(cells, f"{row.job} {row.recipient} {row.state} {row.by or ''}"))
    parts.append(f"</tbody></table>\n{APPROVALS_END}\n")
    return "".join(parts)


class _NoBlock(Exception):
    """Neither the block nor a recipients table: not a page to touch."""


def refresh_block(path: Path, block: Block, text: str) -> str | None:
    """Put ``text`` (the block with its marker lines) in place of ``block`` on the review page
    at ``path``; the page's new sha256.

    The page is copied line by line through ``atomic_writer`` (0600, renamed into place),
    the block replaced; a page without it (an older version wrote the page, or nothing had
    been there to show) gets it right after the recipients table, after any block that
    ``BLOCKS`` puts before it. None, with the page untouched, when neither is found (not a
    review page).
    """
    before = {b.start: b for b in BLOCKS[: BLOCKS.index(block)]}
    after = {b.start for b in BLOCKS[BLOCKS.index(block) + 1 :]}
    try:
        with path.open(encoding="utf-8", newline="") as page, atomic_writer(path) as out:
            state = "before"
            skipping: Block | None = None
            for line in page:
                bare = line.rstrip("\n")
                if skipping is not None:  # an earlier block, copied as it is
                    out.write(line)
                    if bare == skipping.end:
                        skipping = None
                elif state in ("before", "recipients") and bare == block.start:
                    state = "inside"
                elif state == "inside":
                    if bare == block.end:
                        out.write(text)
                        state = "done"
                elif state == "recipients" and bare in before:
                    skipping = before[bare]
                    out.write(line)
                elif state == "recipients" and (
                    line.startswith(("<h2>", "<script>")) or bare in after
                ):
                    out.write(text)
                    out.write(line)
                    state = "done"
                else:
                    if state == "before" and bare == "<h2>Recipients</h2>":
                        state = "recipients"
                    out.write(line)
            if state != "done":
                raise _NoBlock
    except _NoBlock:
        return None
    return out.sha256.hexdigest()


def refresh_approvals(path: Path, rows: Sequence[ApprovalRow]) -> str | None:
    """Rewrite the approvals block of the review page at ``path``; its new sha256, or None
    (page untouched) when it is not a review page (see ``refresh_block``)."""
    return refresh_block(path, APPROVALS, approvals_block(rows))


def _initial_approvals(plan: Plan, written: Iterable[int]) -> list[ApprovalRow]:
    """The run's own view: every written bundle with ``notify:`` settings, none approved."""
    done = set(written)
    return [
        ApprovalRow(r.job, r.recipient, "not approved", r.grant.notify.require_approval)
        for r in plan.routes
        if r.index in done and r.grant.notify is not None
    ]


def _each(
    report: RunReport, items: Callable[[RecipientReport], Sequence[Item]]
) -> list[tuple[str, str, Item]]:
    """(job, recipient, item) for every item ``items`` gives of each recipient in the summary."""
    return [
        (job["name"], r["id"], item)
        for job in report["jobs"]
        for r in job["recipients"]
        for item in items(r)
    ]


def _link_kinds(report: RunReport) -> Iterator[str]:
    """Each bundle's kind of link, shown once any recipient has CloudFront links or networks
    (a run of plain S3 links keeps the page it always had)."""
    people = _each(report, lambda r: [r])
    if not any("link" in r or "allow_ips" in r for _, _, r in people):
        return
    yield (
        '<h2>Link kinds</h2>\n<p id="link-kinds-note">S3 links are presigned (SigV4, at most '
        "7 days, never past the credentials that signed them); CloudFront links are signed "
        "with a key pair of the distribution's key group. Networks (allow_ips) are part of "
        "a CloudFront link's policy; for S3 links only the bucket policy from "
        "<code>sharebatch policy</code> enforces them.</p>\n"
    )
    columns = ["Job", "Recipient", "Link", "Domain", "Key pair", "Hash", "Policy"]
    yield table_open("links", [*columns, "Not before", "Networks", "Page ends"])
    for job, recipient, r in people:
        kind = r.get("link", "s3")
        cf = r.get("cloudfront")
        networks = " ".join(r.get("allow_ips", []))
        values = [
            job,
            recipient,
            "CloudFront" if kind == "cloudfront" else "S3 presigned",
            cf["domain"] if cf else "",
            cf["key_pair_id"] if cf else "",
            cf["hash"].upper().replace("SHA", "SHA-") if cf else "",
            cf["policy"] if cf else "",
            (cf["not_before"] or "") if cf else "",
            networks,
            r.get("page_expires_at", ""),
        ]
        cells: list[tuple[str, str, str | None]] = [("", _e(value), None) for value in values]
        cells[2] = (f"link-{kind}", cells[2][1], None)
        yield table_row(cells, f"{job} {recipient} {kind} {cf['domain'] if cf else ''}")
    yield "</tbody></table>\n"


def _uploads(report: RunReport) -> Iterator[str]:
    """Upload slots that go out with the bundles (their forms and URLs are in the bundles)."""
    slots = _each(report, lambda r: r["uploads"])
    if not slots:
        return
    yield (
        "<h2>Upload slots</h2>\n<p>Each bundle below carries these ways to send files back "
        "(POST keys end in ${filename}, the uploaded file's name).</p>\n"
    )
    columns = ["Job", "Recipient", "Method", "Key", "Content type", "Max size", "Expires"]
    yield table_open("uploads", columns)
    for job, recipient, slot in slots:
        cells = [
            ("", _e(job), None),
            ("", _e(recipient), None),
            ("", _e(slot["method"]), None),
            ("key", _e(slot["key"]), None),
            ("", _e(slot["content_type"] or "any"), None),
            ("num", _e(human_size(slot["max_size"])), str(slot["max_size"])),
            ("", _e(slot["expires_at"]), None),
        ]
        yield table_row(cells, f"{job} {recipient} {slot['key']}")
    yield "</tbody></table>\n"


def _unlinkable(report: RunReport) -> Iterator[str]:
    """Keys that matched but got no link: a browser would have fetched another key."""
    found = _each(report, lambda r: r["unlinkable"])
    total = report["totals"]["unlinkable"]
    if not total:
        return
    more = (
        f" The first {UNLINKABLE_LISTED} of each recipient are listed."
        if total > len(found)
        else ""
    )
    yield (
        f'<h2>Keys without a link</h2>\n<p class="note" id="unlinkable-note">{total} matching '
        "keys have a '.' or '..' segment: browsers and curl would fetch another key, so they "
        f"got no link and are in no bundle.{more}</p>\n"
    )
    yield table_open("unlinkable", ["Job", "Recipient", "Key"])
    for job, recipient, key in found:
        cells: list[tuple[str, str, str | None]] = [
            ("", _e(job), None),
            ("", _e(recipient), None),
            ("key", _e(key), None),
        ]
        yield table_row(cells, f"{job} {recipient} {key}")
    yield "</tbody></table>\n"


def _files(
    rows: Iterator[tuple[str, str, dict[str, Any]]], total: int, max_rows: int
) -> Iterator[str]:
    yield "<h2>Files</h2>\n"
    if total > max_rows:
        yield (
            f'<p class="note" id="truncated">This page lists the first {max_rows} of {total} '
            "links; every link is in the bundles.</p>\n"
        )
    yield table_open("files", ["Job", "Recipient", "Key", "Size", "Modified", "Expires", "Link"])
    for job, recipient, row in rows:
        cells = [
            ("", _e(job), None),
            ("", _e(recipient), None),
            ("key", _e(row["key"]), None),
            ("num", _e(human_size(int(row["size"]))), str(row["size"])),
            ("", _e(row["last_modified"]), None),
            ("", _e(row["expires_at"]), None),
            ("", f'<a href="{_e(row["url"])}" rel="noreferrer noopener">download</a>', None),
        ]
        yield table_row(cells, f"{job} {recipient} {row['key']}")
    yield "</tbody></table>\n"


def write_review(
    folder: RunFolder,
    plan: Plan,
    staged: Staged,
    outcome: Written,
    run_id: str,
    started_at: datetime,
    *,
    max_rows: int | None = None,
) -> WrittenFile:
    """Write ``index.html`` for the bundles just written; call before staging is discarded."""
    max_rows = MAX_ROWS if max_rows is None else max_rows
    written = outcome.bundles
    report = build_report(
        plan, staged, written, run_id, started_at, False, page_failures=outcome.failures
    )
    people = {
        (r.job, r.recipient): " ".join(
            p for p in (r.grant.recipient.name, r.grant.recipient.email) if p
        )
        for r in plan.routes
    }
    total = sum(w.header.links for w in written.values())

    def rows() -> Iterator[tuple[str, str, dict[str, Any]]]:
        count = 0
        for route in plan.routes:
            if route.index not in written:
                continue
            for part in staged.routes[route.index].parts:
                for row in part.rows_in_order():
                    if count == max_rows:
                        return
                    count += 1
                    yield route.job, route.recipient, row

    path = folder.path / "index.html"
    with atomic_writer(path) as out:
        for chunk in _header(report):
            out.write(chunk)
        for chunk in _recipients(report, people):
            out.write(chunk)
        approvals = _initial_approvals(plan, written)
        if approvals:  # a run with nothing to mail keeps the page it always had
            out.write(approvals_block(approvals))
        for chunk in _link_kinds(report):
            out.write(chunk)
        for chunk in _uploads(report):
            out.write(chunk)
        for chunk in _unlinkable(report):
            out.write(chunk)
        for chunk in _files(rows(), total, max_rows):
            out.write(chunk)
        out.write(f"<script>{_SCRIPT}</script>\n</body></html>\n")
    result = WrittenFile(path, min(total, max_rows), out.sha256.hexdigest())
    log.info("review_written", path=str(path), rows=result.rows, sha256=result.sha256)
    return result
