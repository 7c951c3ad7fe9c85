"""Domain errors that carry their HTTP status.

Services raise these; the web layer turns them into a JSON body (API) or a page/flash
(HTML). A domain error is never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """``detail`` is English (the API's language; a page shows it translated when it is an
    ``N_`` message); ``code`` is a stable identifier a client can branch on."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class NotAuthenticated(DomainError):
    status_code = 401
    code = "not_authenticated"


class SignInEnded(NotAuthenticated):
    """A sign-in the account has since ended (a password change, "sign out everywhere"):
    the sign-in page says so, where a plain "please sign in" says nothing."""


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class InvalidInput(DomainError):
    """422: one or more fields are wrong; each error names its field."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid input")

    @classmethod
    def single(cls, field_name: str, message: str) -> InvalidInput:
        return cls([FieldError(field_name, message)])

    def by_field(self) -> dict[str, str]:
        return {e.field: e.message for e in self.errors}


class Unavailable(DomainError):
    """503: a dependency is down; the caller should retry after ``retry_after`` seconds."""

    status_code = 503
    code = "unavailable"

    def __init__(self, detail: str, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(detail, code)
        self.retry_after = retry_after


class IllegalTransition(Conflict):
    """A state machine refused a move. 409 with the reason."""

    code = "illegal_transition"
