"""The private local folder a run writes before it is published to S3.

``tempfile.mkdtemp`` makes it 0700 under ``$TMPDIR`` (or the folder given, ``--work-dir``)
with a random name, so two runs on one machine never share one; the run's OUT lock
(``run/folder.RunLock``) is taken inside it as for any local OUT. It is removed when the block
ends, however it ends (published, failed, interrupted); a SIGKILLed run leaves it behind,
holding links: ``$TMPDIR`` should be private to the job (a pod's ``emptyDir``, a Batch job's
own volume).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sharebatch.errors import UsageError
from sharebatch.visible import visible


@contextmanager
def work_folder(parent: Path | None = None) -> Iterator[Path]:
    """A new 0700 folder under ``parent`` (default ``$TMPDIR``), removed after the block."""
    try:
        made = Path(tempfile.mkdtemp(prefix="sharebatch-", dir=parent))
    except OSError as exc:
        where = visible(str(parent)) if parent else "$TMPDIR"
        raise UsageError(f"cannot make a work folder under {where}: {exc.strerror}") from None
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)
