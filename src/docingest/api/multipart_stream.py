"""Stream the `file` part of a multipart upload without spooling it to disk.

Starlette's `UploadFile` spools bodies over 1 MiB to a temporary file in clear text; a PHI
upload must only ever touch disk encrypted, so the part is parsed incrementally and its
bytes are handed straight to the (encrypting) blob store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

from docingest.api.errors import ApiError
from docingest.domain.errors import ErrorCode
from docingest.store.documents import UploadRefused

FIELD = b"file"


def boundary_of(content_type: str | None) -> bytes:
    if content_type:
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind == b"multipart/form-data" and boundary:
            return boundary
    raise UploadRefused(
        ErrorCode.MALFORMED_REQUEST, "expected multipart/form-data with a file field"
    )


class FilePart:
    """Multipart callbacks that collect the first `file` part's bytes. `filename` is known
    once that part's headers are parsed."""

    def __init__(self) -> None:
        self.filename = "upload.pdf"
        self.found = False
        self.ended = False  # the closing boundary was seen
        self.pending: list[bytes] = []
        self._field = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._field.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def on_header_end(self) -> None:
        self._field = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._in_file = params.get(b"name") == FIELD and not self.found
        if self._in_file:
            self.found = True
            raw_name = params.get(b"filename") or b"upload.pdf"
            self.filename = raw_name.decode("utf-8", "replace")[:255]
        self._headers = {}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(data[start:end])

    def on_part_end(self) -> None:
        self._in_file = False

    def on_end(self) -> None:
        self.ended = True

    def take(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        return data


async def file_part_stream(
    body: AsyncIterator[bytes], boundary: bytes, part: FilePart
) -> AsyncIterator[bytes]:
    """Yield the bytes of the first `file` part; other fields are ignored. A body that ends
    before its closing boundary is refused (`malformed_request`): the file may be cut short.
    Refusals of the edge (a body too large or too slow) pass through unchanged."""
    parser = MultipartParser(
        boundary,
        {
            "on_header_field": part.on_header_field,
            "on_header_value": part.on_header_value,
            "on_header_end": part.on_header_end,
            "on_headers_finished": part.on_headers_finished,
            "on_part_data": part.on_part_data,
            "on_part_end": part.on_part_end,
            "on_end": part.on_end,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
            if part.pending:
                yield part.take()
        parser.finalize()
    except (UploadRefused, ApiError):
        raise
    except Exception:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "malformed multipart body") from None
    if not part.found:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "multipart field 'file' is required")
    if not part.ended:
        raise UploadRefused(
            ErrorCode.MALFORMED_REQUEST, "multipart body ended before its closing boundary"
        )
    if part.pending:
        yield part.take()
