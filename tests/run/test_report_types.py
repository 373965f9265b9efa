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
        assert list(data) == _keys(kind), kind.__name__
