"""The Messages API's errors as the offline test double sends them: the error type of each status code, the
error object (``{"type": "error", "error": {"type", "message"}}``, the body of an error response, the ``error``
event of a stream and the ``error`` of an errored batch entry), and the exception the server's parts raise to
answer with one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The API's error type for each status code it uses.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error_type_for(status: int) -> str:
    """The API's error type for ``status`` (``api_error`` for a status it does not name)."""
    return ERROR_TYPES.get(status, "api_error")


def error_object(error_type: str, message: str) -> dict[str, Any]:
    """The API's error object."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


class ApiError(Exception):
    """Answer the request with this error: ``status``, the API's error object, extra response ``headers``."""

    def __init__(self, status: int, message: str, error_type: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.error_type = error_type or error_type_for(status)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_object(self.error_type, self.message)
