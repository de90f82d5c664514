"""Write keys: with `WRITE_KEYS` set, a batch must carry one of them.

As `Authorization: Bearer <key>`, or as HTTP Basic with the key as the user name and any
password, the way the common analytics clients (Segment's, RudderStack's) send theirs. Keys
are compared in constant time, every key every time, and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from analytics_ingestion.errors import Unauthorized

CHALLENGE = 'Bearer realm="analytics", Basic realm="analytics"'


def key_from_authorization(header: str | None) -> str | None:
    """The key an Authorization header carries, or None."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


def authorize(header: str | None, keys: tuple[str, ...]) -> None:
    """Raise `Unauthorized` unless no keys are configured or the header carries one."""
    if not keys:
        return
    given = key_from_authorization(header)
    if given is None:
        raise Unauthorized("a write key is required: Authorization: Bearer <key>")
    presented = given.encode()
    matched = False
    for key in keys:  # no early exit: the time taken does not tell which key came close
        matched |= hmac.compare_digest(presented, key.encode())
    if not matched:
        raise Unauthorized("the write key is not valid")
