"""The bundle header: a typed value whose JSON form is exactly what bundles have always held."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sharebatch.run.bundles import BundleHeader
from tests.support.paths import ROOT

GOLDEN = ROOT / "tests" / "e2e" / "golden" / "golden-run"


def _golden_headers() -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text(encoding="utf-8"))["header"]
        for path in sorted(GOLDEN.rglob("links.json"))
    ]


def test_the_golden_headers_read_back_to_the_same_json_keys_in_order() -> None:
    """from_json then to_json gives back every golden header, key order included."""
    headers = _golden_headers()
    assert headers
    for header in headers:
        again = BundleHeader.from_json(header).to_json()
        assert json.dumps(again) == json.dumps(header)


def test_a_header_from_before_the_policy_and_prefixes_keeps_its_shape() -> None:
    """An older header (no prefixes, no expiry policy, no slot) reads back without them, and
    its JSON gains no key: a renewal of it says what its source said."""
    header = _golden_headers()[0]
    old = {k: header[k] for k in list(header)[:9]}
    parsed = BundleHeader.from_json(old)
    assert (parsed.prefixes, parsed.policy, parsed.upload) == (None, None, None)
    assert list(parsed.to_json()) == list(old)


def test_a_renewal_adds_its_fields_at_the_end() -> None:
    """renewed_from and renewed follow every field of the source, as renewals wrote them."""
    header = {
        **_golden_headers()[0],
        "renewed_from": {
            "path": "/out/run/q3/globex/links.json",
            "sha256": "0" * 64,
            "run_id": "golden-run",
            "generated_at": "2026-11-28T12:00:00Z",
        },
        "renewed": 2,
    }
    assert json.dumps(BundleHeader.from_json(header).to_json()) == json.dumps(header)


def test_an_inventory_source_reads_back_and_renewals_keep_it() -> None:
    """The report a bundle's links came from is kept at the end of the header, read back."""
    inventory = {
        "source": "s3://inv-dest/src/daily/",
        "manifest": "s3://inv-dest/src/daily/2026-11-29T01-02Z/manifest.json",
        "created_at": "2026-11-29T01:02:00Z",
    }
    header = {**_golden_headers()[0], "inventory": inventory}
    parsed = BundleHeader.from_json(header)
    assert parsed.inventory == inventory
    assert json.dumps(parsed.to_json()) == json.dumps(header)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"run_id": ""}, "run_id: missing"),
        ({"links": "5"}, "links: expected a whole number"),
        ({"links": True}, "links: expected a whole number"),
        ({"prefixes": "q3/"}, "prefixes: expected a list of prefixes"),
        ({"on_short_credentials": "never"}, "on_short_credentials: 'never' is not fail,"),
        ({"expiry": {"expires_at": "2026-12-01"}}, "expiry.expires_at: not a moment with a time"),
        ({"target": {"region": "eu-west-1"}}, "target.bucket: missing"),
        ({"upload": []}, "upload: expected an object"),
        ({"link_ids": "no"}, "link_ids: 'no' is not true or false"),
        ({"page_link_id": 7}, "page_link_id: expected text"),
        ({"inventory": {"source": "s3://i/p/"}}, "inventory: expected source, manifest and"),
        (
            {"inventory": {"source": "s", "manifest": "m", "created_at": "2026-11-29"}},
            "inventory.created_at: not a moment with a time",
        ),
    ],
)
def test_a_header_sharebatch_does_not_write_is_refused_naming_the_field(
    change: dict[str, Any], problem: str
) -> None:
    """Every field is checked: ValueError names the first one that is not as written."""
    with pytest.raises(ValueError, match="^" + re.escape(problem)):
        BundleHeader.from_json({**_golden_headers()[0], **change})


def test_link_ids_off_is_recorded_after_the_policy_and_only_then() -> None:
    """A run with ``link_ids: false`` says so right after the policy fields; a header without
    the key (ids on, or written before ids existed) reads as ids on and writes no key, so a
    renewal of an older bundle keeps its source's header."""
    golden = _golden_headers()[0]
    assert "link_ids" not in golden
    parsed = BundleHeader.from_json(golden)
    assert parsed.policy is not None and parsed.policy.link_ids is True
    off = {**golden, "link_ids": False}
    header = BundleHeader.from_json(off)
    assert header.policy is not None and header.policy.link_ids is False
    written = list(header.to_json())
    assert written[written.index("content_type") + 1] == "link_ids"
    assert header.to_json()["link_ids"] is False
    again = BundleHeader.from_json({**golden, "link_ids": True}).to_json()
    assert json.dumps(again) == json.dumps(golden)


def test_not_an_object_is_refused() -> None:
    """A header that is not a JSON object is not a header."""
    with pytest.raises(ValueError, match=r"^expected an object"):
        BundleHeader.from_json(["run_id"])
