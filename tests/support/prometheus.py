"""A strict reader of Prometheus' text format, for the metrics file."""

from __future__ import annotations

import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})\{{(.*)\}} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> Samples:
    """A strict reader of the text format: every sample typed first, labels well formed."""
    assert text.endswith("\n")
    typed: set[str] = set()
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.fullmatch(rf"# HELP {_NAME} \S.*", line), line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge" and name not in typed
            typed.add(name)
        else:
            match = _SAMPLE.match(line)
            assert match, line
            name, raw, value = match.groups()
            assert name in typed, f"{name} has no TYPE line before it"
            labels, rest = [], raw
            while rest:
                label = _LABEL.match(rest)
                assert label, rest
                key, escaped, _ = label.groups()
                unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), escaped)
                labels.append((key, unescaped))
                rest = rest[label.end() :]
            key_ = (name, frozenset(labels))
            assert key_ not in samples, f"duplicate series {line}"
            samples[key_] = float(value)
    return samples


def gauge(samples: Samples, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]
