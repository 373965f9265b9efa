"""The blocking face of each async entry point: one mechanism, the same parameters."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sharebatch.blocking import blocking
from sharebatch.lifecycle.doctor import diagnose, diagnose_async
from sharebatch.lifecycle.inbox import read_inbox, read_inbox_async
from sharebatch.lifecycle.renew import renew_bundles, renew_bundles_async
from sharebatch.run.runner import run_manifest, run_manifest_async

TWINS = [
    (run_manifest, run_manifest_async),
    (diagnose, diagnose_async),
    (read_inbox, read_inbox_async),
    (renew_bundles, renew_bundles_async),
]


@pytest.mark.parametrize(("face", "twin"), TWINS, ids=lambda f: f.__name__)
def test_each_blocking_face_has_its_async_twins_signature(
    face: Callable[..., Any], twin: Callable[..., Coroutine[Any, Any, Any]]
) -> None:
    """Same parameters, kinds, defaults and annotations, also without following __wrapped__."""
    assert inspect.iscoroutinefunction(twin)
    assert not inspect.iscoroutinefunction(face)
    assert inspect.signature(face) == inspect.signature(twin)
    assert inspect.signature(face, follow_wrapped=False) == inspect.signature(twin)
    assert "connection" in inspect.signature(twin).parameters
    assert face.__name__ + "_async" == twin.__name__
    assert face.__module__ == twin.__module__


def test_the_face_runs_its_coroutine_with_the_given_runner() -> None:
    """Arguments reach the coroutine; the runner given drives it (asyncio.run by default)."""
    ran: list[str] = []

    async def add_async(a: int, *, b: int = 2) -> int:
        """Add."""
        await asyncio.sleep(0)
        return a + b

    def recording_run(coroutine: Coroutine[Any, Any, int]) -> int:
        ran.append("runner")
        return asyncio.run(coroutine)

    assert blocking(add_async)(1, b=3) == 4
    assert blocking(add_async, run=recording_run)(1) == 3
    assert ran == ["runner"]
    assert blocking(add_async).__name__ == "add"
