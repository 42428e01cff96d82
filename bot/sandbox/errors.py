"""Errors the sandbox answers with, shaped like Telegram's."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": status, "description": ...}``."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(what: str) -> ApiError:
    """400 "Bad Request: <what>"."""
    return ApiError(400, f"Bad Request: {what}")


def too_many_requests(retry_after: int) -> ApiError:
    """429 with ``parameters.retry_after``, as Telegram answers a flood."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
