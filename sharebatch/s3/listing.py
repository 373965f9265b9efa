"""Listing for ``S3Gateway`` (its ``listing``): pages from the direct lister (``fastlist``)
while it is on, from botocore otherwise, mapped to plain values and to our errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from sharebatch.audit import get_logger
from sharebatch.errors import CredentialsError, S3ListingError
from sharebatch.models import BucketTarget, Credentials, ObjectRef
from sharebatch.s3.clients import Clients
from sharebatch.s3.fastlist import FastLister, HandOver
from sharebatch.s3.listparse import Page, objects_of
from sharebatch.s3.sigv4 import Unsupported

log = get_logger()

# S3 answers these when the credentials themselves are bad, whatever the bucket or prefix:
# carrying on with other prefixes would only repeat the failure.
CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)


class Listing:
    """Lists prefixes with the gateway's ``clients``: one direct lister per target, opened on
    first use (``direct``: unless switched off), botocore's clients for the rest.

    ``clock`` is the direct lister's signing clock.
    """

    def __init__(self, clients: Clients, *, direct: bool, clock: Callable[[], datetime]) -> None:
        self._clients = clients
        self._direct = direct
        self._clock = clock
        self._listers: dict[BucketTarget, FastLister | None] = {}
        self._provider: Any = None

    async def aclose(self) -> None:
        """Close the direct listers' connections."""
        for lister in self._listers.values():
            if lister is not None:
                await lister.close()

    async def list_pages(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> AsyncIterator[list[ObjectRef]]:
        """Yield every page of objects under ``prefix``, skipping folder markers.

        Each request holds ``slot`` (when given) while it waits for S3's answer.
        """
        token: str | None = None
        while True:
            page = await self._page(target, prefix, None, token, slot)
            yield page.objects
            if page.next_token is None:
                return
            if page.next_token == token:
                # botocore's paginator stops here too: the same token again would loop forever.
                raise S3ListingError("RepeatedToken", "S3 sent the same continuation token twice")
            token = page.next_token

    async def probe_level(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> Level:
        """One delimiter request: the objects right under ``prefix`` and its sub-folders.

        ``complete`` says whether that one page held the whole level; only then can the
        caller list the sub-folders in parallel instead of the prefix as a whole.
        """
        page = await self._page(target, prefix, "/", None, slot)
        return Level(objects=page.objects, folders=page.folders, complete=page.next_token is None)

    async def _page(
        self,
        target: BucketTarget,
        prefix: str,
        delimiter: str | None,
        token: str | None,
        slot: asyncio.Semaphore | None,
    ) -> Page:
        lister = await self._lister(target)
        spent = refused = False
        if lister is not None:
            try:
                found = await lister.page(prefix, delimiter, token, slot)
            except HandOver as handed:
                spent, refused = True, handed.refused
            else:
                if found is not None:
                    return found
        params = {"Bucket": target.bucket, "Prefix": prefix}
        if delimiter is not None:
            params["Delimiter"] = delimiter
        if token is not None:
            params["ContinuationToken"] = token
        with _listing_errors():
            client = await self._clients.client(target, first_try_spent=spent)
            async with slot or contextlib.nullcontext():
                answer = await client.list_objects_v2(**params)
        if refused and lister is not None:
            # Let in where the direct request was refused: the fault was ours, not S3's.
            lister.switch_off("refused where botocore was let in")
        return Page(
            objects=objects_of(target.bucket, answer.get("Contents", ())),
            folders=[str(p["Prefix"]) for p in answer.get("CommonPrefixes", ())],
            next_token=answer.get("NextContinuationToken") if answer.get("IsTruncated") else None,
        )

    async def _lister(self, target: BucketTarget) -> FastLister | None:
        if target not in self._listers:
            lister = None
            reason = "switched off (SHAREBATCH_S3_DIRECT_LISTING=off)"
            clients = self._clients
            if clients.retry.attempts == 1:
                reason = "one attempt per request (SHAREBATCH_S3_ATTEMPTS=1): botocore's"
            elif self._direct:
                try:
                    lister = FastLister(
                        target,
                        region=await clients.region_of(target),
                        credentials=self._frozen_credentials,
                        max_connections=clients.max_connections,
                        policy=clients.retry,
                        profile_config=clients.session._session.get_scoped_config(),
                        ca_bundle=clients.session._session.get_config_variable("ca_bundle"),
                        clock=self._clock,
                    )
                except Unsupported as exc:
                    reason = str(exc)
            log.info(
                "lister_selected",
                bucket=target.bucket,
                lister="direct" if lister else "botocore",
                **({} if lister else {"reason": reason}),
            )
            self._listers[target] = lister
        return self._listers[target]

    async def _frozen_credentials(self) -> Credentials | None:
        """The listing credentials now, from the same provider as botocore's clients."""
        try:
            if self._provider is None:
                self._provider = await self._clients.session.get_credentials()
            if self._provider is None:
                return None
            frozen = await self._provider.get_frozen_credentials()
        except (BotoCoreError, RuntimeError):
            return None  # botocore's own request will say what went wrong
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


@dataclass(frozen=True)
class Level:
    objects: list[ObjectRef]
    folders: list[str]
    complete: bool


@contextlib.contextmanager
def _listing_errors() -> Iterator[None]:
    """Map boto errors to ours: credential problems end the run, others fail the prefix."""
    try:
        yield
    except NoCredentialsError:
        raise CredentialsError("no AWS credentials found") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        message = str(error.get("Message", ""))
        if code in CREDENTIAL_ERRORS:
            raise CredentialsError(f"S3 rejected the credentials: {code}") from None
        raise S3ListingError(code, message) from None
    except BotoCoreError as exc:
        raise S3ListingError(type(exc).__name__, str(exc)) from None
