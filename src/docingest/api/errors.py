"""The error body of DESIGN.md §4: `{"error": {"code", "message"}}`."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from docingest.domain.errors import DocingestError, ErrorCode

_STATUS = {
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_PDF: 415,
    ErrorCode.EMPTY_FILE: 415,
    ErrorCode.MALFORMED_REQUEST: 422,
    ErrorCode.CHECKSUM_MISMATCH: 400,
}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


async def handle_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DocingestError)
    return error_response(_STATUS.get(exc.code, 500), exc.code, exc.message)


async def handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
    return error_response(
        422, ErrorCode.MALFORMED_REQUEST, f"invalid request fields: {', '.join(fields)}"
    )
