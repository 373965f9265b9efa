"""``--shard K/N`` and ``--shard auto/N``: which of N disjoint parts of a run this process does.

``auto`` takes K from the scheduler: Kubernetes Indexed Jobs set ``JOB_COMPLETION_INDEX`` in
each pod, AWS Batch array jobs ``AWS_BATCH_JOB_ARRAY_INDEX`` in each child. Both count from 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sharebatch.errors import UsageError
from sharebatch.visible import visible

INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")
MAX_SHARDS = 10_000
_SPEC = re.compile(r"(auto|[0-9]{1,5})/([0-9]{1,5})")


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Shard ``index`` (from 0) of ``count``."""

    index: int
    count: int

    @property
    def name(self) -> str:
        """The shard's folder name under ``OUT/<run-id>/shards/``: ``2-of-7``."""
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str, environ: Mapping[str, str]) -> ShardSpec:
    """``K/N`` or ``auto/N``; ``UsageError`` (exit 2) naming what is wrong."""
    found = _SPEC.fullmatch(text.strip())
    if found is None:
        raise UsageError(
            f"--shard {visible(text)!r}: expected K/N (two whole numbers, K from 0) or auto/N"
        )
    count = int(found[2])
    if not 1 <= count <= MAX_SHARDS:
        raise UsageError(f"--shard {text}: N must be between 1 and {MAX_SHARDS}")
    index = _from_environment(environ, text) if found[1] == "auto" else int(found[1])
    if index >= count:
        raise UsageError(f"--shard {text}: K is {index}, it must be less than N ({count}), from 0")
    return ShardSpec(index, count)


def _from_environment(environ: Mapping[str, str], text: str) -> int:
    for name in INDEX_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        if not re.fullmatch(r"[0-9]{1,5}", value.strip()):
            raise UsageError(f"--shard {text}: {name}={visible(value)!r} is not a whole number")
        return int(value)
    raise UsageError(
        f"--shard {text}: neither {' nor '.join(INDEX_VARIABLES)} is set (a Kubernetes Indexed"
        " Job or an AWS Batch array job sets one); give K/N instead"
    )
