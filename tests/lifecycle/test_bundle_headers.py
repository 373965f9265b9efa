"""Bundle headers read back: typed when sharebatch wrote them, named field by field when not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sharebatch.errors import LinkError
from sharebatch.lifecycle.inspect import inspect_bundle, read_bundle
from sharebatch.lifecycle.renew import renew_bundles
from tests.support.paths import ROOT

GLOBEX = ROOT / "tests" / "e2e" / "golden" / "golden-run" / "q3-partners" / "globex" / "links.json"
NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


def _with_header_change(tmp_path: Path, **change: object) -> Path:
    data = json.loads(GLOBEX.read_text(encoding="utf-8"))
    data["header"].update(change)
    path = tmp_path / "links.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_written_header_reads_back_typed() -> None:
    """The golden bundle's header is a BundleHeader: its policy, slot and prefixes as written."""
    bundle = read_bundle(GLOBEX)
    assert bundle.header is not None and bundle.header_problem is None
    assert (bundle.header.run_id, bundle.header.job, bundle.header.links) == (
        "golden-run",
        "q3-partners",
        5,
    )
    assert bundle.header.policy is not None
    assert bundle.header.policy.expiry.seconds == 259200
    assert bundle.header.upload is not None and bundle.header.upload.max_size == 20000000


def test_a_bundle_with_a_header_sharebatch_did_not_write_is_still_inspected(
    tmp_path: Path,
) -> None:
    """Its links are read and judged as ever; only the header's run and job are unknown."""
    bundle = read_bundle(_with_header_change(tmp_path, links="five"))
    assert bundle.header is None
    assert bundle.header_problem == "links: expected a whole number"
    shown = inspect_bundle(bundle, NOW, timedelta(0))
    assert (shown["run_id"], shown["job"]) == (None, None)
    assert sum(len(r["links"]) for r in shown["recipients"]) == 5


def test_renewing_it_is_refused_naming_the_field(tmp_path: Path) -> None:
    """renew reads the policy from the header, so a header it cannot read is exit 2, naming
    the file and the field, before any S3 request."""
    path = _with_header_change(tmp_path, links="five")
    with pytest.raises(LinkError, match="header: links: expected a whole number") as caught:
        renew_bundles([path])
    assert str(path) in str(caught.value)
