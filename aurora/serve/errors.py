"""HTTP errors in OpenAI's schema: `{"error": {"message", "type", "param", "code"}}`.

`APIError` carries a status and the four fields; `from_exception` maps anything raised while
serving a request to one. User mistakes (AuroraError) become 400 with their one-line message;
anything else becomes a 500 that says nothing about the internals (the traceback goes to the log).
"""

from __future__ import annotations

from aurora.errors import AuroraError, MediaError


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_exception(error: BaseException) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, MediaError):
        return APIError(400, str(error), code="invalid_media")
    if isinstance(error, AuroraError):
        return APIError(400, str(error))
    return APIError(500, "internal server error; see the server log", type="server_error")


# Status -> OpenAI error type, for errors raised by the framework (unknown route, wrong method).
STATUS_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "invalid_request_error", 503: "server_overloaded"}
