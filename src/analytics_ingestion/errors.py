"""The service's errors, each knowing the HTTP status it is answered with.

    IngestionError                      500
    ├── RequestError                    4xx: the request itself is wrong; retrying won't help
    │   ├── MalformedBody               400
    │   ├── Unauthorized                401 (write keys are configured, none valid was given)
    │   ├── RequestTimeout              408 (the body did not arrive in time)
    │   ├── PayloadTooLarge             413 (as sent, or once decompressed)
    │   └── UnsupportedMediaType        415 (content type or content encoding)
    └── Unavailable                     503 + Retry-After: nothing of the request was stored
        ├── Overloaded                  the queue is full, or the request waited too long in it
        ├── DatabaseUnavailable         the database cannot be reached, or does not answer
        ├── WriteFailed                 the database refused this write (not for its data)
        └── ShuttingDown                the service is draining

    ConfigError                         an invalid setting, raised before anything runs

A bad *event* is not an exception: it becomes a `Rejection` in the answer and a row in the
dead-letter table, while the rest of its batch is stored.
"""

from __future__ import annotations


class IngestionError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, object]:
        return {"error": self.message}


class RequestError(IngestionError):
    status_code = 400


class MalformedBody(RequestError):
    status_code = 400

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position

    def body(self) -> dict[str, object]:
        body = super().body()
        if self.position is not None:
            body["position"] = self.position
        return body


class Unauthorized(RequestError):
    status_code = 401


class RequestTimeout(RequestError):
    status_code = 408


class PayloadTooLarge(RequestError):
    status_code = 413

    def __init__(self, limit: int, what: str = "request body") -> None:
        super().__init__(f"{what} exceeds the limit of {limit} bytes (MAX_BODY_BYTES)")
        self.limit = limit

    def body(self) -> dict[str, object]:
        return {**super().body(), "limit_bytes": self.limit}


class UnsupportedMediaType(RequestError):
    status_code = 415


class Unavailable(IngestionError):
    status_code = 503


class Overloaded(Unavailable):
    pass


class DatabaseUnavailable(Unavailable):
    pass


class WriteFailed(Unavailable):
    pass


class ShuttingDown(Unavailable):
    pass


class ConfigError(Exception):
    def __init__(self, name: str, value: str | None, expected: str) -> None:
        shown = f"={value!r}" if value is not None else ""
        super().__init__(f"invalid {name}{shown}: expected {expected}")
        self.name = name
