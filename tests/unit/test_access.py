from __future__ import annotations

import base64

import pytest

from analytics_ingestion.access import authorize, key_from_authorization
from analytics_ingestion.errors import Unauthorized

KEY = "wk_0123456789abcdef"


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "key"),
    [
        pytest.param(f"Bearer {KEY}", KEY, id="bearer"),
        pytest.param(f"bearer   {KEY} ", KEY, id="bearer-case-and-spaces"),
        pytest.param(basic(KEY), KEY, id="basic-key-as-user"),
        pytest.param(basic(KEY, "ignored"), KEY, id="basic-with-password"),
        pytest.param(None, None, id="none"),
        pytest.param("Bearer ", None, id="bearer-empty"),
        pytest.param("Basic not-base64!", None, id="basic-garbage"),
        pytest.param(basic(""), None, id="basic-empty-user"),
        pytest.param(f"Token {KEY}", None, id="other-scheme"),
    ],
)
def test_key_from_authorization(header: str | None, key: str | None) -> None:
    assert key_from_authorization(header) == key


def test_no_keys_configured_lets_everyone_write() -> None:
    authorize(None, ())


def test_a_configured_key_is_required() -> None:
    keys = ("another-key-0123456789", KEY)
    authorize(f"Bearer {KEY}", keys)
    authorize(basic(KEY), keys)
    with pytest.raises(Unauthorized, match="a write key is required"):
        authorize(None, keys)
    with pytest.raises(Unauthorized, match="not valid") as refused:
        authorize(f"Bearer {KEY}x", keys)
    assert KEY not in str(refused.value)
