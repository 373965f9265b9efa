"""S3 server access logging on moto: the target bucket's policy for S3's logging service, and
logging turned on, as an operator would (moto checks the policy, as S3 does)."""

from __future__ import annotations

import json

from tests.support.s3 import S3


def logging_policy(logs: str, prefix: str) -> str:
    """The policy letting ``logging.s3.amazonaws.com`` write under ``logs``/``prefix``."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "logging.s3.amazonaws.com"},
                    "Action": ["s3:PutObject"],
                    "Resource": f"arn:aws:s3:::{logs}/{prefix}*",
                }
            ],
        }
    )


def turn_on_logging(s3: S3, bucket: str, target: str, prefix: str) -> None:
    """Logging of ``bucket`` into ``target``/``prefix``; ``target`` is created unless it is
    ``bucket`` itself or exists already."""
    if target != bucket and target not in {b["Name"] for b in s3.client.list_buckets()["Buckets"]}:
        s3.bucket(target, {})
    s3.client.put_bucket_policy(Bucket=target, Policy=logging_policy(target, prefix))
    s3.client.put_bucket_logging(
        Bucket=bucket,
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": prefix}},
    )
