"""Finding a key named twice in one JSON object. Pure, no I/O.

JSON parsers (msgspec's, PostgreSQL's jsonb) keep the last of equal keys without a word, so a
client's mistake (or a payload built to show a checker one value and store another) would
pass unseen. An event naming a key twice is refused instead, with the key's path.

The check is cheap in the usual case by counting: every key in the text ends with `"` and
then `:` once whitespace is taken out, so the text has at least as many `":` as keys, and more
only when a string value holds one too. A decoded value that holds as many keys as the text has
`":` had no key twice. Only when the counts differ does the exact scan run.
"""

from __future__ import annotations

import json
import re
from typing import Any

_KEY_END = b'":'
_WHITESPACE = b" \t\r\n"  # JSON's, the only bytes allowed between a key and its colon
# Strings (escapes included) and the structural characters; numbers and literals are skipped.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]', re.DOTALL)
_QUOTE = ord('"')


def key_ends(text: bytes) -> int:
    """At least the number of keys in `text`: more only if strings hold `":` (see above)."""
    return text.translate(None, _WHITESPACE).count(_KEY_END)


def count_keys(value: Any) -> int:
    """The keys of every object inside a decoded JSON value (duplicates already merged)."""
    count = 0
    pending = [value]
    while pending:  # not recursive: a deeply nested value must not exhaust the stack
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


def find_duplicate_key(text: bytes, decoded: Any) -> str | None:
    """The path of the first key named twice in one object of `text`, or None.

    `text` is valid JSON and `decoded` its value as a parser that keeps the last of equal keys
    reads it. Paths read like the rest of the service's reasons: `event.context.tags[2].name`.
    """
    if key_ends(text) == count_keys(decoded):
        return None
    return _scan(text)


class _Container:
    __slots__ = ("keys", "position", "reached_by")

    def __init__(self, keys: set[str] | None, reached_by: str | int | None) -> None:
        self.keys = keys  # the keys seen so far; None in an array
        self.position = 0  # in an array, the element being read
        self.reached_by = reached_by  # the key or position leading to it from its parent


def _scan(text: bytes) -> str | None:
    containers: list[_Container] = []
    reached_by: str | int | None = None  # the key or position of the next value
    string = b""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == _QUOTE:
            string = token
        elif token == b":":
            keys = containers[-1].keys
            assert keys is not None
            # Escapes decoded ("a" and "\u0061" are one key); invalid UTF-8 is refused
            # elsewhere, and kept distinct here.
            name = json.loads(string.decode("utf-8", "surrogateescape"))
            if name in keys:
                return _path([*(c.reached_by for c in containers[1:]), name])
            keys.add(name)
            reached_by = name
        elif token == b"{":
            containers.append(_Container(set(), reached_by))
        elif token == b"[":
            containers.append(_Container(None, reached_by))
            reached_by = 0
        elif token == b",":
            container = containers[-1]
            if container.keys is None:
                container.position += 1
                reached_by = container.position
        else:  # } or ]
            containers.pop()
    return None


def _path(steps: list[str | int | None]) -> str:
    path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in steps)
    return path.removeprefix(".")
