"""``OUT/<run-id>/deliveries.jsonl``: every message handed over, or refused, one JSON line each.

The ledger is what makes ``notify`` idempotent: a message whose line says ``sent`` is not sent
again unless asked (``--resend``). Each line is written whole with one ``write`` on a file
opened ``O_APPEND`` and then ``fsync``ed, so a crash (``kill -9``) leaves whole lines only: the
message being handed over at that moment has no line and goes again with the same Message-ID.
An exclusive ``flock`` keeps two ``notify`` of the same run from sending the same messages.

A line never holds a URL: recipient, addresses, Message-ID, time, the server's reply, status.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sharebatch.errors import RunLocked

LEDGER_FILE = "deliveries.jsonl"
Status = Literal["sent", "failed"]
MessageKey = tuple[str, str, str, str | None, tuple[str, ...]]
"""job, recipient, kind, renewal, addresses: what one message is for."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger line (and the fields of its ``mail_sent``/``mail_failed`` audit event)."""

    time: str
    run_id: str
    job: str
    recipient: str
    addresses: list[str]
    message_id: str
    kind: str
    renewal: str | None
    status: Status
    reply: str
    attempts: int
    resend: int = 0
    # Addresses refused while the others took the message: the next notify sends it to them.
    undelivered: list[str] = field(default_factory=list)

    @property
    def key(self) -> MessageKey:
        """What one message is for; a ``sent`` line with this key means it went out."""
        return (self.job, self.recipient, self.kind, self.renewal, tuple(self.addresses))


def read_ledger(run_dir: Path) -> list[Delivery]:
    """Every line of the run's ledger; a line that is not one of ours is passed over."""
    try:
        text = (run_dir / LEDGER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return list(_lines(text))


def _lines(text: str) -> Iterator[Delivery]:
    for line in text.splitlines():
        try:
            data = json.loads(line)
            yield Delivery(**{k: data[k] for k in Delivery.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError, RecursionError):
            continue  # not a line this version wrote; it proves nothing was sent


class Ledger:
    """The ledger opened for appending, held exclusively while ``notify`` sends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LEDGER_FILE
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunLocked(
                    f"{self.path}: another notify of this run is sending; nothing was sent"
                ) from None
            raise

    async def append(self, delivery: Delivery) -> None:
        """Write one whole line and wait for the disk to have it.

        The ``fsync`` runs in a worker thread: the other messages' connections go on
        meanwhile (one write per line keeps lines whole whatever the interleaving).
        """
        data = (json.dumps(_json(delivery), ensure_ascii=False) + "\n").encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        await asyncio.to_thread(os.fsync, self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(delivery: Delivery) -> dict[str, Any]:
    return asdict(delivery)
