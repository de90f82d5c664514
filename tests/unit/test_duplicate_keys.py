import json

import msgspec
import pytest

from analytics_ingestion.duplicate_keys import count_keys, find_duplicate_key


def duplicate(text: bytes) -> str | None:
    try:
        decoded = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        decoded = None
    return find_duplicate_key(text, decoded)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param(b'{"a":1,"b":2}', None, id="none"),
        pytest.param(b'{"a":1,"a":2}', "a", id="top-level"),
        pytest.param(b'{"a":{"b":1,"c":{"d":1,"d":1}}}', "a.c.d", id="nested"),
        pytest.param(
            b'{"a":[{"b":1},{"b":1,"c":[0,{"e":1,"e":2}]}]}', "a[1].c[1].e", id="in-arrays"
        ),
        pytest.param(b'{"a":1,"\\u0061":2}', "a", id="escaped-spelling-of-the-same-key"),
        pytest.param(b'{"a" :1, "a"\n:2}', "a", id="whitespace-before-the-colon"),
        pytest.param(b'{"a":{"x":1},"b":{"x":1}}', None, id="same-key-in-two-objects"),
        pytest.param(b'[{"x":1},{"x":1}]', None, id="same-key-in-two-elements"),
        pytest.param(b'{"a":"\\":\\":","b":"x\\\\":1}', None, id="values-that-look-like-keys"),
        pytest.param(b'{"a\\"":1,"a":2}', None, id="escaped-quote-in-a-key"),
        pytest.param(b'{"a\\\\":1,"a\\\\":2}', "a\\", id="escaped-backslash-ending-a-key"),
        pytest.param(b'{"n":1e400,"n":1}', "n", id="a-number-the-decoder-refuses"),
        pytest.param(b'{"":1,"":2}', "", id="empty-key"),
    ],
)
def test_find_duplicate_key(text: bytes, path: str | None) -> None:
    assert duplicate(text) == path


def test_deep_nesting_is_scanned_without_recursion() -> None:
    depth = 50_000
    text = b'{"a":' * depth + b"1" + b"}" * depth
    assert duplicate(text) is None
    assert find_duplicate_key(b'[{"a":1,"a":2}' + b"]", None) == "[0].a"


def test_count_keys_counts_every_object() -> None:
    value = json.loads('{"a": {"b": [1, {"c": null, "d": {}}]}, "e": []}')
    assert count_keys(value) == 5
    assert count_keys([1, "x", None]) == 0
