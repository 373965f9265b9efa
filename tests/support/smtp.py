"""Real SMTP servers on 127.0.0.1 for the delivery tests: aiosmtpd's ``Controller``.

``Mailbox`` is the handler: it keeps every message it accepts (envelope and the exact bytes of
DATA) and can misbehave on purpose: refuse an address at RCPT (``refuse``), answer DATA with
given replies before accepting (``data_replies``: ``421`` then accept), drop the connection in
DATA (``drop_in_data``), or hold its answer to the Nth message until the test releases it
(``hold_at``: the kill -9 test). ``Silent`` accepts connections and never says a word.
``make_tls`` writes a private CA and a certificate for 127.0.0.1, signed by it, with
``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Captured:
    """One message a server accepted: its envelope and the bytes of DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default)


@dataclass
class Mailbox:
    """The handler of a test server: keeps what it accepts, misbehaves when told to."""

    refuse: dict[str, str] = field(default_factory=dict)
    # address -> how many more RCPTs of it ``refuse`` answers; then it is accepted
    refuse_times: dict[str, int] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_in_data: int = 0
    hold_at: int | None = None
    parallel: int | None = None
    peak: int = 0
    _active: int = 0
    messages: list[Captured] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            left = self.refuse_times.get(address)
            if left is None:
                return self.refuse[address]
            if left > 0:
                self.refuse_times[address] = left - 1
                return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_in_data:
            self.drop_in_data -= 1
            assert server.transport is not None
            server.transport.close()
            return "451 dropped"
        if self.data_replies:
            return self.data_replies.pop(0)
        if self.parallel is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._meet)
        login = session.auth_data.login.decode() if session.auth_data else None
        content = envelope.original_content or b""
        with self._changed:
            self.messages.append(
                Captured(envelope.mail_from or "", tuple(envelope.rcpt_tos), content, login)
            )
            count = len(self.messages)
            self._changed.notify_all()
        if self.hold_at is not None and count >= self.hold_at:
            self.held.set()
            # In a worker thread: the server's loop must keep serving while this one waits.
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        return "250 2.0.0 Ok: queued"

    def _meet(self) -> None:
        """Hold this DATA until ``parallel`` were in at once; ``peak`` keeps the most seen."""
        with self._changed:
            self._active += 1
            self.peak = max(self.peak, self._active)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.peak >= (self.parallel or 0), timeout=10)
            self._active -= 1

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
            if data.password == b"s3cret-smtp-pass":
                return AuthResult(success=True, auth_data=data)
        # handled=False: aiosmtpd answers 535 itself (True would leave the client waiting).
        return AuthResult(success=False, handled=False)

    def wait_for(self, count: int, timeout: float = 30) -> list[Captured]:
        """The messages, once there are at least ``count`` (fails after ``timeout``)."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def to(self, address: str) -> list[Captured]:
        return [m for m in self.messages if address in m.rcpt_tos]


@dataclass(frozen=True)
class TlsFiles:
    """A private CA (``ca``) and the server's certificate and key for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls(folder: Path) -> TlsFiles:
    """A CA and a 127.0.0.1 certificate it signed, valid from a day ago for a year."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sharebatch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now (for a test that needs one nobody serves)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class _BoundController(Controller):
    """aiosmtpd's ``Controller`` serving a socket bound before it starts.

    A port probed free and bound again later can be taken in between (any test's outgoing
    connection may get it as its own ephemeral port): the server then failed to start, an
    error in the test's setup. Binding port 0 once and serving that socket leaves no gap;
    ``port`` is set to the bound one, which aiosmtpd's start-up connects to.
    """

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind((HOST, 0))
        super().__init__(handler, hostname=HOST, port=self._socket.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self._socket, ssl=self.ssl_context
        )


@dataclass
class Server:
    """A running test server: where it listens and what it received."""

    port: int
    mailbox: Mailbox


@contextmanager
def smtp_server(
    mailbox: Mailbox | None = None,
    *,
    tls: TlsFiles | None = None,
    implicit_tls: bool = False,
    auth: bool = False,
) -> Iterator[Server]:
    """An aiosmtpd server on 127.0.0.1: plain, STARTTLS (``tls``), implicit TLS
    (``implicit_tls``), with AUTH required (``auth``, over TLS)."""
    box = mailbox or Mailbox()
    kwargs: dict[str, Any] = {}
    if tls is not None and implicit_tls:
        kwargs["ssl_context"] = tls.server_context()
    elif tls is not None:
        kwargs |= {"tls_context": tls.server_context(), "require_starttls": True}
    if auth:
        # aiosmtpd counts only STARTTLS as TLS for AUTH: on an implicit-TLS server (TLS from
        # byte 0) AUTH is offered without that check, and not required (it warns otherwise);
        # the test sees the login in ``logins`` and ``Captured.login``.
        kwargs |= {
            "authenticator": box.authenticate,
            "auth_required": not implicit_tls,
            "auth_require_tls": not implicit_tls,
        }
    controller = _BoundController(box, **kwargs)
    try:
        controller.start()
        yield Server(controller.port, box)
    finally:
        box.release.set()  # a held answer must not keep the server's thread from stopping
        controller.stop(no_assert=True)


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])
