"""summary.json has a type: RunReport and its parts name every key the golden run wrote."""

from __future__ import annotations

import json
from typing import Any

from sharebatch.models import (
    JobReport,
    ManifestReport,
    PrefixReport,
    RecipientReport,
    RunReport,
    SlotSummary,
    TotalsReport,
)
from tests.support.paths import ROOT

SUMMARY = ROOT / "tests" / "e2e" / "golden" / "golden-run" / "summary.json"


# Keys a summary holds only when they say something: the golden run's S3 links have none.
_ONLY_WHEN_SAID: dict[Any, set[str]] = {
    RecipientReport: {"link", "cloudfront", "allow_ips", "page_expires_at"},
    RunReport: {"inventories"},  # only when a job read an S3 Inventory report
}


def _keys(kind: Any) -> list[str]:
    return list(kind.__annotations__)


def test_the_report_types_name_the_golden_summarys_keys_in_order() -> None:
    """Each object of summary.json has exactly its TypedDict's keys, in the same order."""
    report = json.loads(SUMMARY.read_text(encoding="utf-8"))
    job = report["jobs"][0]
    recipient = next(r for j in report["jobs"] for r in j["recipients"] if r["uploads"])
    pairs = [
        (report, RunReport),
        (report["manifest"], ManifestReport),
        (report["totals"], TotalsReport),
        (job, JobReport),
        (recipient, RecipientReport),
        (recipient["uploads"][0], SlotSummary),
        (report["prefixes"][0], PrefixReport),
    ]
    for data, kind in pairs:
        assert list(data) == [k for k in _keys(kind) if k in data], kind.__name__
        assert set(_keys(kind)) - set(data) <= _ONLY_WHEN_SAID.get(kind, set()), kind.__name__
