"""Named error codes and the exceptions that carry them.

Messages must never contain document text, filenames or tokens: ids and codes only.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # upload (HTTP) refusals
    TOO_LARGE = "too_large"
    NOT_PDF = "not_pdf"
    EMPTY_FILE = "empty_file"
    MALFORMED_REQUEST = "malformed_request"
    # parse stage
    ENCRYPTED = "encrypted"
    NO_TEXT = "no_text"
    CORRUPT_PDF = "corrupt_pdf"
    NO_PAGES = "no_pages"
    TOO_MANY_PAGES = "too_many_pages"
    PARSE_LIMIT = "parse_limit"
    PARSER_UNAVAILABLE = "parser_unavailable"
    # integrity
    INTEGRITY_ERROR = "integrity_error"
    # chunk stage
    CHUNKING_ERROR = "chunking_error"
    # embed stage
    EMBEDDING_REJECTED = "embedding_rejected"
    EMBEDDING_UNAVAILABLE = "embedding_unavailable"
    EMBEDDING_AUTH = "embedding_auth"
    # generic
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL = "internal"


class DocingestError(Exception):
    """Base error with a stable code and a content-free message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PermanentError(DocingestError):
    """The input or configuration is wrong; retrying cannot help. Ends in failed_*."""


class TransientError(DocingestError):
    """A passing fault (timeout, 429, 5xx, connection loss); retried with backoff."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class ParseError(PermanentError):
    """The PDF cannot be turned into text. Codes: encrypted, no_text, corrupt_pdf, no_pages,
    too_many_pages, parse_limit."""
