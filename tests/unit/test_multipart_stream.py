"""The streamed multipart reader refuses a body it cannot parse as the client's fault
(`malformed_request`), but lets a bug of ours surface as what it is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from docingest.api.multipart_stream import FilePart, file_part_stream
from docingest.domain.errors import ErrorCode
from docingest.store.documents import UploadRefused

BOUNDARY = b"b0undary"
GOOD = (
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
    b"Content-Type: application/pdf\r\n\r\n"
    b"%PDF-1.7 body\r\n"
    b"--b0undary--\r\n"
)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def _read(body: bytes, part: FilePart, boundary: bytes = BOUNDARY) -> bytes:
    return b"".join([c async for c in file_part_stream(_chunks(body), boundary, part)])


async def test_a_well_formed_body_yields_the_file() -> None:
    part = FilePart()
    assert await _read(GOOD, part) == b"%PDF-1.7 body"
    assert part.filename == "a.pdf"


@pytest.mark.parametrize(
    "body",
    [
        b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--b0undaryX',
        b"--wrong\r\n\r\n",
        b"no boundary at all, just text",
    ],
)
async def test_an_unparsable_body_is_a_malformed_request(body: bytes) -> None:
    with pytest.raises(UploadRefused) as refused:
        await _read(body, FilePart())
    assert refused.value.code == ErrorCode.MALFORMED_REQUEST


async def test_a_too_long_boundary_is_a_malformed_request() -> None:
    with pytest.raises(UploadRefused) as refused:
        await _read(GOOD, FilePart(), boundary=b"b" * 100)
    assert refused.value.code == ErrorCode.MALFORMED_REQUEST


class BuggyPart(FilePart):
    """A callback with a programming error, as a regression would bring one."""

    def on_headers_finished(self) -> None:
        raise KeyError("content-disposition")


async def test_a_bug_in_our_callbacks_is_not_disguised_as_a_client_error() -> None:
    with pytest.raises(KeyError):
        await _read(GOOD, BuggyPart())
