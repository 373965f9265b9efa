"""Checking that the links of bundles actually work, the way a recipient would use them.

Each link is tried once over HTTP (``s3.probe_link``: a one-byte GET for GET links, since a
HEAD is refused by a GET signature), at most ``concurrency`` at a time in threads, and the
answer is compared with the bundle: the object must be there, with the size and ETag the
bundle promised. A link already past its ``expires_at`` is reported expired without asking
(S3 would refuse it; a lenient server must not make it look alive). A link whose path a browser
or curl would change before sending it (``.``/``..`` segments, ``%2e`` forms, backslashes) is
reported ``rewritten`` without asking: it cannot reach its object, whatever a server answers
to the path as written.

CloudFront links (issue 16) are checked the same way against their distribution: the same
ranged GET, the same path rule, the object's size and ETag compared with the bundle row
(CloudFront forwards S3's). One whose start (``DateGreaterThan``) is still ahead is
``skipped``: CloudFront refuses it until then by design, which says nothing of the object.
A row whose link is not what its bundle header signs (``inspect.cloudfront_row_problems``:
another domain, key pair, hash, IP range or start, another key, a wildcard Resource) is an
``error`` naming the reason and is never requested: an edited row must not make us fetch
from wherever it points.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sharebatch.audit import url_digest
from sharebatch.errors import LinkError, UsageError
from sharebatch.lifecycle.inspect import (
    Bundle,
    BundleRow,
    CloudFrontUrl,
    cloudfront_row_problems,
    read_bundle,
    row_end,
    row_link,
)
from sharebatch.models import LinkProbe
from sharebatch.s3.gateway import browser_url, probe_link
from sharebatch.times import iso
from sharebatch.units import counted

Outcome = Literal["ok", "missing", "changed", "expired", "denied", "error", "skipped", "rewritten"]
Probe = Callable[[str, str], LinkProbe]
MAX_CONCURRENCY = 64

# S3's codes for a link whose own time is up, or whose signing credentials' time is.
_EXPIRED_CODES = frozenset({"ExpiredToken", "TokenRefreshRequired"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})


@dataclass(frozen=True)
class Verdict:
    """The result for one link; ``url`` is kept out of ``repr`` and only shown on request."""

    bundle: str
    line: int
    recipient: str
    bucket: str
    key: str
    method: str
    outcome: Outcome
    detail: str
    http_status: int | None
    url_sha256: str
    url: str = field(repr=False)

    def data(self, show_urls: bool = False) -> dict[str, Any]:
        found = {k: v for k, v in self.__dict__.items() if k != "url"}
        return found | ({"url": self.url} if show_urls else {})


@dataclass(frozen=True)
class VerifyReport:
    verdicts: list[Verdict]
    checked: int
    total: int

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.outcome not in ("ok", "skipped")]

    @property
    def exit_code(self) -> int:
        """0 when every checked link works as the bundle says, else 1."""
        return 1 if self.failures else 0

    def data(self, show_urls: bool = False) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            counts[verdict.outcome] = counts.get(verdict.outcome, 0) + 1
        return {
            "links": self.total,
            "checked": self.checked,
            "outcomes": counts,
            "ok": not self.failures,
            "results": [v.data(show_urls) for v in self.verdicts],
        }


def judge(row: BundleRow, answer: LinkProbe) -> tuple[Outcome, str]:
    """Compare S3's answer with the bundle row: outcome and a human reason (no URL)."""
    status, code = answer.status, answer.error or ""
    if status is None:
        return "error", f"no answer: {answer.message or code}"
    if status == 404 or code in _MISSING_CODES:
        return "missing", f"{status} {code or 'Not Found'}: the object is gone"
    if status == 403:
        if code in _EXPIRED_CODES or "expired" in answer.message.lower():
            return "expired", f"403 {code}: {answer.message}".rstrip(": ")
        detail = f"403 {code or 'Forbidden'}: {answer.message}".rstrip(": ")
        if code == "AccessDenied":
            # S3 hides a missing key behind AccessDenied from signers that may not list.
            detail += " (also S3's answer for a deleted object when the signer cannot list)"
        return "denied", detail
    # 416 is S3's answer to a one-byte range of an empty object, after checking the signature.
    if status not in (200, 206) and not (status == 416 and answer.size == 0):
        return "error", f"{status} {code}".rstrip()
    problems = []
    if answer.size is not None and answer.size != row.size:
        problems.append(f"size {counted(answer.size, 'byte')}, the bundle says {row.size}")
    if answer.etag is not None and row.etag and answer.etag != row.etag:
        problems.append(f"ETag {answer.etag}, the bundle says {row.etag}")
    if problems:
        return "changed", "; ".join(problems)
    return "ok", f"{status}" + ("" if answer.etag else " (no ETag to compare)")


def _sampled(rows: Sequence[BundleRow], sample: int | None, rng: random.Random) -> list[BundleRow]:
    if sample is None or sample >= len(rows):
        return list(rows)
    # Sampled rows keep bundle order, so a report reads like the bundle.
    return sorted(rng.sample(list(rows), sample), key=lambda row: row.line)


def verify_bundles(
    paths: Iterable[str | Path],
    *,
    sample: int | None = None,
    concurrency: int = 16,
    timeout: float = 15.0,
    now: datetime | None = None,
    seed: int | None = None,
    probe: Probe | None = None,
) -> VerifyReport:
    """Check every link (or ``sample`` random ones per bundle) of each bundle.

    Bundles are all read before any request, so a bad file is refused (``LinkError``,
    exit 2) before anything is checked.
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if sample is not None and sample < 1:
        raise UsageError("--sample must be at least 1")
    now = now or datetime.now(UTC)
    bundles: list[Bundle] = [read_bundle(path) for path in paths]
    for bundle in bundles:
        if bundle.slots_only:
            # Nothing to download there: "0 links checked, exit 0" would pass it silently.
            raise LinkError(
                f"{bundle.path}: an uploads.csv holds upload slots, not links; verify checks"
                " links (sharebatch inspect shows the slots and when they end)"
            )
    rng = random.Random(seed)  # noqa: S311 - a sample to check, not a secret
    chosen = [(b, row) for b in bundles for row in _sampled(b.rows, sample, rng)]
    for bundle, row in chosen:
        row_link(bundle, row)  # an unreadable URL is bad input, found before any request
    check = probe or (lambda url, method: probe_link(url, method, timeout=timeout))

    def one(item: tuple[Bundle, BundleRow]) -> Verdict:
        bundle, row = item
        status: int | None = None
        sent = browser_url(row.url)
        facts = row_link(bundle, row)
        start = facts.not_before if isinstance(facts, CloudFrontUrl) else None
        problem = facts.problem(now) if isinstance(facts, CloudFrontUrl) else None
        foreign = (
            cloudfront_row_problems(bundle, row, facts) if isinstance(facts, CloudFrontUrl) else []
        )
        outcome: Outcome
        if foreign:
            outcome, detail = "error", f"refused: {'; '.join(foreign)}; not requested"
        elif row_end(bundle, row) <= now:
            outcome = "expired"
            detail = "expired by its own terms; not requested"
        elif problem:
            outcome, detail = "error", f"CloudFront refuses it whatever the time: {problem}"
        elif start is not None and now <= start:
            outcome = "skipped"
            detail = f"not valid before {iso(start)} (its policy's start); not requested"
        elif sent != row.url:
            outcome = "rewritten"
            detail = (
                f"a browser or curl would request {urlsplit(sent).path}, not this link's path;"
                " not requested"
            )
        elif row.method not in ("GET", "HEAD"):
            outcome, detail = "skipped", f"a {row.method} link cannot be checked without using it"
        else:
            answer = check(row.url, row.method)
            outcome, detail = judge(row, answer)
            status = answer.status
        return Verdict(
            bundle=str(bundle.path),
            line=row.line,
            recipient=row.recipient,
            bucket=row.bucket,
            key=row.key,
            method=row.method,
            outcome=outcome,
            detail=detail,
            http_status=status,
            url_sha256=url_digest(row.url),
            url=row.url,
        )

    # Threads bound the number of requests in flight; map keeps the bundles' order.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="verify") as pool:
        verdicts = list(pool.map(one, chosen))
    return VerifyReport(verdicts, len(chosen), sum(len(b.rows) for b in bundles))
