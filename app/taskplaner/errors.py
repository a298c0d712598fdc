"""The one error type the services raise; the web layer turns it into a JSON response."""

from __future__ import annotations


class AppError(Exception):
    """A failure the client can act on: mapped to ``{"error": {code, message, field?}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        err = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}


def invalid(field: str, message: str) -> AppError:
    return AppError(422, "invalid", message, field)


def not_found(what: str) -> AppError:
    return AppError(404, "not_found", f"{what} not found")
