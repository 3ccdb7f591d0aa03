"""Domain errors. Logic raises these; the API maps each to a status code and the route family's error body."""

from __future__ import annotations


class DomainError(Exception):
    """An error a caller can act on. A subclass names its HTTP status, OpenAI error type and code in its bases:
    `class NotFound(DomainError, status=404, error_type="not_found_error", code="not_found")`."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init_subclass__(
        cls, *, status: int | None = None, error_type: str | None = None, code: str | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if error_type is not None:
            cls.error_type = error_type
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(DomainError, code="invalid_request"):
    pass


class Unauthorized(DomainError, status=401, error_type="authentication_error", code="invalid_api_key"):
    pass


class Forbidden(DomainError, status=403, error_type="permission_error", code="forbidden"):
    pass


class NotFound(DomainError, status=404, error_type="not_found_error", code="not_found"):
    pass


class Conflict(DomainError, status=409, error_type="conflict_error", code="conflict"):
    pass


class PayloadTooLarge(DomainError, status=413, code="payload_too_large"):
    pass


class UnsupportedMediaType(DomainError, status=415, code="unsupported_media_type"):
    pass


class Unprocessable(DomainError, status=422, code="unprocessable_entity"):
    pass


class RateLimited(DomainError, status=429, error_type="rate_limit_error", code="rate_limit_exceeded"):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError, status=503, error_type="server_error", code="service_unavailable"):
    pass
