"""Stream the `file` part of a multipart upload without spooling it to disk.

Starlette's `UploadFile` spools bodies over 1 MiB to a temporary file in clear text; a PHI
upload must only ever touch disk encrypted, so the part is parsed incrementally and its
bytes are handed straight to the (encrypting) blob store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from docingest.domain.errors import ErrorCode
from docingest.store.documents import UploadRefused

FIELD = "file"


@dataclass
class FilePart:
    """Filled in while streaming; `filename` is known once the part's headers are parsed."""

    filename: str = "upload.pdf"
    found: bool = False
    _header_field: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _in_file: bool = False
    _pending: list[bytes] = field(default_factory=list)


def boundary_of(content_type: str | None) -> bytes:
    if not content_type:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "expected multipart/form-data with a file field")
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "expected multipart/form-data with a file field")
    return boundary


async def file_part_stream(body: AsyncIterator[bytes], boundary: bytes, part: FilePart) -> AsyncIterator[bytes]:
    """Yield the bytes of the first `file` part; other fields are ignored."""

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part._header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        name = part._header_field.lower()
        part._headers[name] = part._headers.get(name, b"") + data[start:end]

    def on_header_end() -> None:
        part._header_field = b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(part._headers.get(b"content-disposition", b""))
        part._in_file = params.get(b"name") == FIELD.encode() and not part.found
        if part._in_file:
            part.found = True
            raw_name = params.get(b"filename") or b"upload.pdf"
            part.filename = raw_name.decode("utf-8", "replace")[:255]
        part._headers = {}

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part._in_file:
            part._pending.append(data[start:end])

    def on_part_end() -> None:
        part._in_file = False

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
            if part._pending:
                data = b"".join(part._pending)
                part._pending.clear()
                yield data
        parser.finalize()
    except UploadRefused:
        raise
    except Exception:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "malformed multipart body") from None
    if part._pending:
        yield b"".join(part._pending)
        part._pending.clear()
    if not part.found:
        raise UploadRefused(ErrorCode.MALFORMED_REQUEST, "multipart field 'file' is required")
