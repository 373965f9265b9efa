"""The fast presigner with its botocore fallback (``FastPresigner``), and the same rebuilt
inside a signing worker process without importing botocore.

A worker (``run/worker``) signs with the very ``SigV4Presigner`` the parent would use. The
parent checks that the fast signer applies to a target (``presigners.Signers.worker_spec``) and
sends this module's ``FastSpec`` and the run's frozen credentials down the worker's pipe: they
are never logged, never written to disk. Importing this module imports no boto: a worker stays
small. Only a key the fast signer does not reproduce (``Unsupported``, rare) makes a worker
import botocore, once, to sign that key as the parent would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sharebatch.models import BucketTarget, Credentials, Presigner
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported


@dataclass(frozen=True, slots=True)
class FastSpec:
    """What a worker needs to rebuild a target's presigner: no secret in it."""

    target: BucketTarget
    region: str
    profile: str | None


def worker_presigner(spec: FastSpec, credentials: Credentials) -> FastPresigner:
    """``presigners.Signers.presigner``'s fast path, for a target the parent found it fits."""
    target = spec.target
    # The parent already refused the fast signer where the environment or the profile steer
    # botocore (``worker_spec``); the worker inherits that environment.
    fast = SigV4Presigner(
        credentials,
        region=spec.region,
        endpoint_url=target.endpoint_url,
        addressing_style=target.addressing_style,
        environ=os.environ,
        profile_config={},
    )

    def botocores() -> Presigner:
        import botocore.session  # the rare key only, see above

        from sharebatch.s3.presigners import botocore_presigner

        session = botocore.session.Session(profile=spec.profile)
        return botocore_presigner(session, target, spec.region, credentials)

    return FastPresigner(fast, botocores)


class FastPresigner:
    """The fast signer, with botocore's for a rare key or parameter it was not proven on.

    A ``Presigner``; ``get_many`` signs a batch of GETs in one call (``sign.Signer`` uses it
    when present), or says None when any of them needs botocore: the caller then signs that
    batch one call per link, each going to whichever signer takes it.
    """

    def __init__(self, fast: SigV4Presigner, slow: Callable[[], Presigner]) -> None:
        self._fast = fast
        self._make_slow = slow
        self._slow: Presigner | None = None

    def __call__(
        self, method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
    ) -> str:
        try:
            return self._fast(method, bucket, key, expires_in, params)
        except Unsupported:
            if self._slow is None:
                self._slow = self._make_slow()
            return self._slow(method, bucket, key, expires_in, params)

    def get_many(
        self, bucket: str, expires_in: int, requests: Iterable[tuple[str, Mapping[str, str]]]
    ) -> tuple[list[str], datetime] | None:
        """``SigV4Presigner.get_many``'s URLs and their signing moment, or None."""
        try:
            return self._fast.get_many(bucket, expires_in, requests)
        except Unsupported:
            return None
