"""How hard each S3 request is tried: attempts and timeouts for every S3 client of a run.

The defaults suit AWS; ``SHAREBATCH_S3_ATTEMPTS``, ``SHAREBATCH_S3_CONNECT_TIMEOUT`` and
``SHAREBATCH_S3_READ_TIMEOUT`` override them (for a slow S3-compatible store, or a test that
must not wait a minute for a timeout). An invalid value is a usage error (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sharebatch.errors import UsageError


@dataclass(frozen=True)
class RetryPolicy:
    """How hard each S3 request is tried: botocore's adaptive mode, attempts and timeouts.

    Adaptive mode retries throttling (503 SlowDown), 5xx answers, timeouts and dropped
    connections with jittered exponential backoff, and slows the client's own request rate
    while S3 throttles it. ``attempts`` counts every try of one request, the first included.
    """

    attempts: int = 6
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetryPolicy:
        """The defaults, overridden by ``SHAREBATCH_S3_*`` variables (exit 2 when invalid)."""
        values: dict[str, Any] = {}
        for name, field_name, cast, top in _POLICY_ENV:
            text = environ.get(name)
            if text is None or not text.strip():
                continue
            try:
                value = cast(text)
            except ValueError:
                value = None
            if value is None or not 0 < value <= top:
                raise UsageError(f"{name}={text!r}: expected a number above 0, at most {top}")
            values[field_name] = value
        return cls(**values)


_POLICY_ENV: tuple[tuple[str, str, Callable[[str], float], float], ...] = (
    ("SHAREBATCH_S3_ATTEMPTS", "attempts", int, 20),
    ("SHAREBATCH_S3_CONNECT_TIMEOUT", "connect_timeout", float, 600),
    ("SHAREBATCH_S3_READ_TIMEOUT", "read_timeout", float, 600),
)
