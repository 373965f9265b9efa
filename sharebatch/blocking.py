"""The blocking face of an async entry point: ``diagnose = blocking(diagnose_async)``.

One mechanism for every ``x``/``x_async`` pair of the library, so the two cannot drift apart:
the blocking face takes exactly the coroutine function's parameters (its signature is the
coroutine function's) and runs it to completion in a new event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def blocking(
    coroutine_function: Callable[P, Coroutine[Any, Any, T]],
    *,
    run: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run,
) -> Callable[P, T]:
    """``coroutine_function``'s blocking twin, named without its ``_async`` suffix.

    ``run`` drives the coroutine: ``asyncio.run`` by default, or a runner with more to do
    (``run_interruptible`` routes SIGINT and SIGTERM to the run).
    """

    @functools.wraps(coroutine_function)
    def face(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(coroutine_function(*args, **kwargs))

    face.__name__ = coroutine_function.__name__.removesuffix("_async")
    face.__qualname__ = coroutine_function.__qualname__.removesuffix("_async")
    face.__doc__ = (
        f"``{coroutine_function.__name__}`` run to completion in a new event loop.\n\n"
        + inspect.cleandoc(coroutine_function.__doc__ or "")
    )
    # Also without following ``__wrapped__``: the face's parameters are the coroutine's.
    face.__signature__ = inspect.signature(coroutine_function)  # type: ignore[attr-defined]
    return face
