"""Live progress of a run, per job, for whoever watches it (the CLI draws it on a terminal).

The pipeline updates a ``Progress`` as pages are listed and links signed; each change reaches
the caller's callback as a frozen ``JobProgress``. The library only counts: drawing is the
CLI's business, and a run without a callback pays for nothing but a few additions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from sharebatch.run.plan import Plan


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Where one job stands. A prefix shared by several jobs counts in each of them."""

    job: str
    prefixes: int
    prefixes_done: int = 0
    prefixes_failed: int = 0
    objects_listed: int = 0
    links_signed: int = 0


ProgressCallback = Callable[[JobProgress], None]


class Progress:
    """Per-job counters; every update is passed on to ``callback``."""

    def __init__(self, plan: Plan, callback: ProgressCallback) -> None:
        totals: dict[str, int] = {route.job: 0 for route in plan.routes}
        for task in plan.tasks:
            for job in {plan.routes[slot.route].job for slot in task.slots}:
                totals[job] += 1
        self._jobs = {job: JobProgress(job, count) for job, count in totals.items()}
        self._callback = callback

    def start(self) -> None:
        """Announce every job, in manifest order, before anything is listed."""
        for state in self._jobs.values():
            self._callback(state)

    def _bump(self, job: str, **counts: int) -> None:
        state = self._jobs[job]
        state = replace(state, **{k: getattr(state, k) + v for k, v in counts.items()})
        self._jobs[job] = state
        self._callback(state)

    def listed(self, jobs: Iterable[str], objects: int) -> None:
        for job in set(jobs):
            self._bump(job, objects_listed=objects)

    def signed(self, job: str, links: int) -> None:
        if links:
            self._bump(job, links_signed=links)

    def prefix_done(self, jobs: Iterable[str], failed: bool) -> None:
        for job in set(jobs):
            self._bump(job, prefixes_done=1, prefixes_failed=int(failed))

    def snapshot(self) -> list[JobProgress]:
        return list(self._jobs.values())
