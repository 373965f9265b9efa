from collections.abc import Callable
from datetime import datetime

from sharebatch.receipts.accesslog import HitRow

def scan(
    text: str,
    at: int,
    most: int,
    hits: list[HitRow],
    times: dict[str, datetime],
    convert: Callable[[str], datetime],
    /,
) -> tuple[int, int, int] | None: ...
