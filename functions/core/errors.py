"""Domain errors. Logic raises these; the API maps each to a status code and the route family's error body."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(DomainError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(DomainError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class NotFound(DomainError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    error_type = "conflict_error"
    code = "conflict"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(DomainError):
    status_code = 422
    code = "unprocessable_entity"


class RateLimited(DomainError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"
