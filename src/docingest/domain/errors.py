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
    CHECKSUM_MISMATCH = "checksum_mismatch"  # the client's Content-SHA256 is not the file's
    # parse stage
    ENCRYPTED = "encrypted"
    NO_TEXT = "no_text"
    CORRUPT_PDF = "corrupt_pdf"
    NO_PAGES = "no_pages"
    TOO_MANY_PAGES = "too_many_pages"
    PARSE_LIMIT = "parse_limit"
    DECOMPRESSION_BOMB = "decompression_bomb"  # streams inflate (or are drawn) far beyond the file
    TEXT_LIMIT = "text_limit"  # more extracted text per page or per document than allowed
    PARSER_UNAVAILABLE = "parser_unavailable"
    PARSER_FAILED = "parser_failed"  # remote job ended ERROR, PARTIAL_SUCCESS, CANCELLED
    PARSER_REJECTED = "parser_rejected"  # the remote parser refused our request (4xx)
    # integrity
    INTEGRITY_ERROR = "integrity_error"
    STORAGE_UNAVAILABLE = "storage_unavailable"  # the blob store did not answer (retried)
    # chunk stage
    CHUNKING_ERROR = "chunking_error"
    TOO_MANY_CHUNKS = "too_many_chunks"  # more chunks than DOCINGEST_MAX_CHUNKS
    # embed stage
    EMBEDDING_REJECTED = "embedding_rejected"
    EMBEDDING_UNAVAILABLE = "embedding_unavailable"
    EMBEDDING_AUTH = "embedding_auth"
    EMBEDDING_QUOTA = "embedding_quota_exhausted"  # waits for the quota; never fails a job
    EMBEDDING_INPUT_REJECTED = "embedding_input_rejected"  # the provider refuses a chunk (poison)
    # generic
    RETRIES_EXHAUSTED = "retries_exhausted"
    STATEMENT_TIMEOUT = "statement_timeout"  # a database statement ran past its deadline
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


class Deferred(Exception):
    """Not a failure: the job waits for something outside (a parse callback, a remote job
    still running). The worker releases it until `delay_s` from now without spending its
    retry budget."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


class RateLimited(TransientError):
    """The provider throttled us (429 rate limit): the service is up, wait and resend."""


class QuotaExhausted(TransientError):
    """The provider's quota is used up (429 insufficient_quota): not a rate limit. Stop
    spending until someone adds credit; jobs wait, they do not fail."""


class InputRejected(PermanentError):
    """The provider refused the request's input (HTTP 400/413/422): one input of the batch
    may be poison, which splitting the batch finds."""


class ParseError(PermanentError):
    """The PDF cannot be turned into text. Codes: encrypted, no_text, corrupt_pdf, no_pages,
    too_many_pages, parse_limit, decompression_bomb, text_limit."""
