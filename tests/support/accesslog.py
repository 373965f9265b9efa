"""S3 server access log lines written as AWS documents them (and as S3 really writes them),
for tests.

Field order, the bracketed time and the quoted Request-URI, Referer and User-Agent follow the
S3 user guide ("Amazon S3 server access log format"). S3 escapes nothing inside a quoted field:
a quote a client sent is written raw, and so it is here.
"""

from __future__ import annotations

from datetime import UTC, datetime

OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
HOST_ID = "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234="


def quoted(value: str | None) -> str:
    """A quoted field as S3 writes it: ``"-"`` when empty, anything else raw between quotes."""
    return '"-"' if value is None else f'"{value}"'


def stamp(moment: datetime) -> str:
    """The bracketed time field, ``[06/Feb/2019:00:00:38 +0000]``."""
    return moment.astimezone(UTC).strftime("[%d/%b/%Y:%H:%M:%S +0000]")


def log_line(
    *,
    bucket: str,
    time: datetime,
    request_uri: str | None,
    key: str | None,
    operation: str = "REST.GET.OBJECT",
    status: int | None = 200,
    error_code: str | None = None,
    bytes_sent: int | None = 0,
    object_size: int | None = None,
    remote_ip: str = "192.0.2.3",
    requester: str | None = None,
    request_id: str = "3E57427F3EXAMPLE",
    user_agent: str | None = "curl/8.5.0",
    referer: str | None = None,
    trailing: bool = True,
) -> str:
    """One record, without its newline; ``trailing=False`` stops after User-Agent, as the
    oldest records do. ``request_uri=None`` writes ``-`` (no request line)."""

    def dash(value: object) -> str:
        return "-" if value is None else str(value)

    fields = [
        OWNER,
        bucket,
        stamp(time),
        remote_ip,
        dash(requester),
        request_id,
        operation,
        dash(key),
        "-" if request_uri is None else f'"{request_uri}"',
        dash(status),
        dash(error_code),
        dash(bytes_sent),
        dash(object_size),
        "7",
        "5",
        quoted(referer),
        quoted(user_agent),
    ]
    if trailing:
        fields += [
            "-",
            HOST_ID,
            "SigV4",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "QueryString",
            f"{bucket}.s3.us-east-1.amazonaws.com",
            "TLSv1.2",
            "-",
            "-",
            "us-east-1",
        ]
    return " ".join(fields)


QUOTE_FLOODS = [
    '" ' * 32_000 + 'x"x',
    '"' + '" "' * 21_000 + "x",
    '- "' + '" ' * 32_000,
    '"a" ' * 16_000 + "x",
    '" 1 - 2 3 4 5 "' * 4_000,
]
"""Lines' tails full of quotes, placed after the status fields where the Referer and the
User-Agent are split: a split that tries every pair of quotes takes time quadratic in them."""
