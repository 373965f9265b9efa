"""Text templates: ``{name}`` and ``{group.name}`` variables, ``{{`` and ``}}`` for braces.

Manifests use them so one file serves every quarter (``reports/{period.year}/Q{period.quarter}/``)
and every recipient (``partners/{recipient.id}/``). The syntax is deliberately small: a variable
is a name or a dotted pair of names, there are no formats, defaults or expressions, and any other
use of a brace is an error rather than a literal, so a typo never reaches S3 as a key.

Rendering happens in two stages for download names: the manifest fills everything it knows and
``keep``s the per-object variables (the result is still a template, braces still escaped); the
signer then calls ``render_object`` for each key.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

from sharebatch.errors import TemplateError

OBJECT_VARIABLES: frozenset[str] = frozenset({"key", "basename", "stem", "ext"})
"""Variables known only per object, in ``download_name``."""

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_HINT = "write '{{' or '}}' for a literal brace"


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str


def escape(text: str) -> str:
    """``text`` as a template that renders to exactly ``text``."""
    return text.replace("{", "{{").replace("}", "}}")


@lru_cache(maxsize=1024)
def _parse(template: str) -> tuple[str | _Variable, ...]:
    parts: list[str | _Variable] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        char = template[i]
        if char in "{}" and template.startswith(char * 2, i):
            literal.append(char)
            i += 2
        elif char == "}":
            raise TemplateError(f"single '}}' at character {i + 1}; {_HINT}")
        elif char == "{":
            end = template.find("}", i + 1)
            inner = template.find("{", i + 1)
            if end < 0:
                raise TemplateError(f"'{{' at character {i + 1} is never closed; {_HINT}")
            if 0 <= inner < end:
                raise TemplateError(
                    f"'{{' at character {inner + 1} is inside another variable; braces do not nest"
                )
            name = template[i + 1 : end]
            if not _NAME_RE.fullmatch(name):
                shown = repr("{" + name + "}")
                raise TemplateError(
                    f"{shown} at character {i + 1} is not a variable; a variable is a name like"
                    f" {{period.year}} or {{basename}}; {_HINT}"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Variable(name))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def names(template: str) -> frozenset[str]:
    """The variables ``template`` uses; raises ``TemplateError`` if it cannot be read."""
    return frozenset(p.name for p in _parse(template) if isinstance(p, _Variable))


def unknown_message(name: str, known: Collection[str]) -> str:
    """The message for an unknown variable, listing the known ones."""
    listed = ", ".join("{" + k + "}" for k in known) or "none"
    return f"unknown template variable {{{name}}}; known: {listed}"


def render(template: str, variables: Mapping[str, str], *, keep: Collection[str] = ()) -> str:
    """Substitute ``variables`` into ``template``.

    Without ``keep`` the result is plain text (``{{`` becomes ``{``). With ``keep`` the result
    is itself a template: kept names stay as ``{name}``, literal braces (including any in the
    substituted values) stay escaped, so a second ``render`` finishes the job. A name neither
    in ``variables`` nor in ``keep`` raises ``TemplateError``.
    """
    as_template = bool(keep)
    out: list[str] = []
    for part in _parse(template):
        if isinstance(part, str):
            out.append(escape(part) if as_template else part)
        elif part.name in variables:
            value = variables[part.name]
            out.append(escape(value) if as_template else value)
        elif part.name in keep:
            out.append("{" + part.name + "}")
        else:
            raise TemplateError(unknown_message(part.name, [*variables, *keep]))
    return "".join(out)


def object_variables(key: str) -> dict[str, str]:
    """``key``, ``basename`` (after the last '/'), ``stem`` and ``ext`` (last extension, dot
    included, or empty; a leading dot as in ``.env`` is not an extension)."""
    basename = key.rpartition("/")[2]
    stem, ext = posixpath.splitext(basename)
    return {"key": key, "basename": basename, "stem": stem, "ext": ext}


def render_object(template: str, key: str) -> str:
    """The second stage for ``download_name``: fill the object variables for ``key``."""
    return render(template, object_variables(key))


def object_renderer(template: str) -> Callable[[str], str]:
    """``render_object(template, key)`` as a function of ``key``, made once per template.

    Signing calls it for every link: a template that is one object variable alone (the
    default ``{basename}``) is answered without building the variables of every key.
    """
    parts = _parse(template)
    if parts == (_Variable("basename"),):
        return lambda key: key.rpartition("/")[2]
    if parts == (_Variable("key"),):
        return lambda key: key
    return lambda key: render(template, object_variables(key))
