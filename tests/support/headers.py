"""A bundle header for tests that write bundles but do not care what their header says."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sharebatch.run.bundles import BundleHeader

SAMPLE = BundleHeader(
    run_id="run-1",
    job="job",
    recipient="alice",
    recipient_name=None,
    recipient_email=None,
    generated_at="2026-11-28T20:15:00Z",
    signer_access_key_id="AKIAEXAMPLE",
    expires_at=None,
    links=0,
)


def sample_header(**changes: Any) -> BundleHeader:
    """Job ``job``'s bundle for ``alice`` from run ``run-1``, with ``changes``."""
    return replace(SAMPLE, **changes)
