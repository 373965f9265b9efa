"""The select stage: which listed objects each recipient receives.

A ``Selector`` is built once per route from its ``Filters`` and then asked about every object,
so patterns are compiled to one regular expression each, up front.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sharebatch.models import Filters, ObjectRef

# A whole "." or ".." segment: browsers and curl resolve it before sending the request.
_DOT_SEGMENT = re.compile(r"(?:\A|/)\.\.?(?:/|\Z)")


def linkable(key: str) -> bool:
    """Whether a presigned link to ``key`` reaches it from a browser or curl.

    Both remove ``.`` and ``..`` path segments before sending a URL, so ``a/./b.pdf``
    would fetch ``a/b.pdf`` (or be refused by S3) and ``evil/../../etc/passwd`` leaves the
    bucket. The signer percent-encodes ``%``, so a key's own ``%2e`` is no dot segment.
    """
    # Nearly every key has no segment starting with a dot: two substring tests spare the regex.
    if "/." not in key and not key.startswith("."):
        return True
    return _DOT_SEGMENT.search(key) is None


def unlinkable(objects: list[ObjectRef]) -> list[ObjectRef]:
    """The objects whose key ``linkable`` refuses, in order. One C-level pass over the page's
    keys joined by "/" (a leading one too) says when there is none, nearly always: "/." can
    only appear there where a key has a segment starting with a dot."""
    if "/." not in "/" + "/".join([o.key for o in objects]):
        return []
    return [o for o in objects if not linkable(o.key)]


def glob_to_regex(pattern: str) -> str:
    """Translate a key glob: ``**`` crosses ``/``; ``*`` and ``?`` stay within a segment.

    ``**/`` also matches no folder at all, so ``**/*.pdf`` takes ``a.pdf`` as well as
    ``x/y/a.pdf``, as in .gitignore. ``[abc]`` and ``[!abc]`` are character classes.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = [glob_to_regex(p) for p in patterns]
    if not alternatives:
        return None
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)


class Selector:
    """``accepts(obj)``: whether an object passes every filter of a route."""

    def __init__(self, filters: Filters) -> None:
        self._include = _compile(filters.include)
        self._exclude = _compile(filters.exclude)
        self._after = filters.modified_after
        self._before = filters.modified_before
        self._min = filters.min_size
        self._max = filters.max_size
        self.max_links = filters.max_links
        self.selects_all = not any((self._include, self._exclude, self._after, self._before)) and (
            self._min,
            self._max,
        ) == (None, None)

    def accepts(self, obj: ObjectRef) -> bool:
        if self._include is not None and not self._include.fullmatch(obj.key):
            return False
        if self._exclude is not None and self._exclude.fullmatch(obj.key):
            return False
        # [modified_after, modified_before): consecutive periods neither overlap nor leave gaps.
        if self._after is not None and obj.last_modified < self._after:
            return False
        if self._before is not None and obj.last_modified >= self._before:
            return False
        if self._min is not None and obj.size < self._min:
            return False
        return self._max is None or obj.size <= self._max

    def select(self, page: list[ObjectRef]) -> list[ObjectRef]:
        return page if self.selects_all else [o for o in page if self.accepts(o)]
