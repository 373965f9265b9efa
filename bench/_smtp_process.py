"""Child process for the notify benchmark: an aiosmtpd server whose every reply comes late.

Each reply waits ``delay`` seconds before it is sent, in the server's event loop
(``asyncio.sleep``): the greeting, the answer to every command, and the answer to the end of a
message's data. That is the round trip of each SMTP exchange on a real network, so the client
measured spends its time as it would with a remote server. The server runs in this process so
that its CPU does not compete with the client's for one GIL.

Prints ``READY <port>``; then answers each ``count`` line on stdin with the number of messages
accepted so far and the CPU seconds this process has used, and exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_COMMANDS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")


class Counter:
    """The handler: accepts every message, keeps only how many came."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)  # the answer to the message's end crosses the network
        self.accepted += 1
        return "250 2.0.0 Ok: queued"


def _late(name: str) -> Any:
    async def command(self: LateSMTP, arg: str) -> None:
        await asyncio.sleep(self.delay)
        await getattr(SMTP, f"smtp_{name}")(self, arg)

    return command


class LateSMTP(SMTP):
    """aiosmtpd's server with each reply held back by ``delay`` seconds."""

    def __init__(self, handler: Counter, **kwargs: Any) -> None:
        self.delay = handler.delay
        super().__init__(handler, **kwargs)

    async def _handle_client(self) -> None:
        await asyncio.sleep(self.delay)  # connecting and the greeting: one round trip
        await super()._handle_client()


for _name in _COMMANDS:
    setattr(LateSMTP, f"smtp_{_name}", _late(_name))


class LateController(Controller):
    def factory(self) -> SMTP:
        return LateSMTP(self.handler, **self.SMTP_kwargs)


def main() -> None:
    handler = Counter(float(sys.argv[1]))
    with socket.socket() as probe:  # the Controller checks its server by connecting to it,
        probe.bind(("127.0.0.1", 0))  # which port 0 would not allow
        port = int(probe.getsockname()[1])
    controller = LateController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", port, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(handler.accepted, time.process_time(), flush=True)
    controller.stop()


if __name__ == "__main__":
    main()
