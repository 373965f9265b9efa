"""S3 server access log lines written as AWS documents them, for tests."""

from __future__ import annotations

from datetime import UTC, datetime

OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
HOST_ID = "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234="


def quoted(value: str | None) -> str:
    """A quoted field as S3 writes it: ``-`` when empty, ``\\"`` inside."""
    if value is None:
        return "-"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    """One record; ``trailing=False`` stops after User-Agent, as records before 2017 did."""

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
        quoted(request_uri),
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
        ]
    return " ".join(fields)
