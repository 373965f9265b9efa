"""``usage`` over S3: log objects under an ``s3://`` prefix on moto, and credentials refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sharebatch.models import Connection
from sharebatch.receipts.sources import parse_source
from sharebatch.receipts.usage import usage
from tests.support.linkkit import invoke
from tests.support.s3 import S3
from tests.support.usage_run import usage_run, write_logs


def test_logs_read_from_s3_count_as_from_a_folder(s3: S3, tmp_path: Path) -> None:
    """The same records as two log objects under an s3:// prefix (moto) and as a folder:
    the same figures, and the source names its two files."""
    hand = usage_run(tmp_path / "out", datetime.now(UTC))
    t = hand.issued + timedelta(minutes=5)
    first = [hand.line("a", t), hand.line("c", t, remote_ip="2001:db8::5")]
    second = [hand.line("c", t + timedelta(hours=1), status=206, bytes_sent=7), "not a record"]
    s3.bucket("access-logs", {})
    for name, lines in (("one", first), ("two", second)):
        body = "".join(line + "\n" for line in lines).encode()
        s3.client.put_object(Bucket="access-logs", Key=f"q3-share/{name}", Body=body)
    s3.client.put_object(Bucket="access-logs", Key="elsewhere/x", Body=b"not ours\n")
    folder = write_logs(tmp_path / "logs", "one", first)
    write_logs(folder, "two", second)
    connection = Connection(endpoint_url=s3.endpoint)
    remote = usage(
        hand.run_dir, [parse_source("s3://access-logs/q3-share/")], connection=connection
    ).usage
    local = usage(hand.run_dir, [parse_source(str(folder))], connection=connection).usage
    assert remote["sources"] == [
        {"source": "s3://access-logs/q3-share/", "files": 2, "lines": 4, "bad_lines": 1}
    ]
    assert remote["bad_lines"] == [
        {
            "file": "s3://access-logs/q3-share/two",
            "line": 2,
            "problem": local["bad_lines"][0]["problem"],
        }
    ]
    for part in ("lines", "recipients", "links", "daily", "signals"):
        assert remote[part] == local[part], part


def test_an_s3_source_without_credentials_exits_3_writing_nothing(
    moto_endpoint: str, tmp_path: Path
) -> None:
    """No credentials anywhere (the sealed environment): exit 3, no usage.json."""
    hand = usage_run(tmp_path / "out", datetime.now(UTC))
    args = ["usage", str(hand.run_dir), "--access-logs", "s3://access-logs/q3-share/"]
    result = invoke(*args, "--endpoint-url", moto_endpoint)
    assert result.exit_code == 3, result.stderr
    assert "credentials" in result.stderr
    assert not (hand.run_dir / "usage.json").exists()
