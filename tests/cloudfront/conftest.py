"""The CloudFront tests' edge factory (tests/support/cloudfront_edge.py), closed after each test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack

import pytest

from tests.support.cloudfront_edge import Edge, EdgeFactory, PublicKey, cloudfront_edge
from tests.support.s3 import S3


@pytest.fixture
def cloudfront_edges(s3: S3) -> Iterator[EdgeFactory]:
    """``make(bucket, keys, host=..., clock=...)``: a running edge in front of a moto bucket."""
    with ExitStack() as stack:

        def make(
            bucket: str,
            keys: Mapping[str, PublicKey],
            *,
            host: str = "127.0.0.1",
            clock: Callable[[], float] = time.time,
        ) -> Edge:
            return stack.enter_context(cloudfront_edge(s3, bucket, keys, host=host, clock=clock))

        yield make
