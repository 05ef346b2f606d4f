"""LlamaParse client rules that need no server: status mapping and the transport rule."""

from __future__ import annotations

import pytest

from docingest.bootstrap import parser
from docingest.clients.llamaparse import LlamaParseClient, interpret_status
from docingest.config import ConfigError, Settings


@pytest.mark.parametrize(
    ("body", "state", "code"),
    [
        ({"status": "SUCCESS"}, "success", None),
        ({"status": "PENDING"}, "pending", None),
        (
            {"status": "ERROR", "error_code": "NO_DATA_FOUND_IN_FILE"},
            "failed",
            "NO_DATA_FOUND_IN_FILE",
        ),
        ({"status": "PARTIAL_SUCCESS", "error_code": "X"}, "failed", "X"),
        ({"status": "CANCELED"}, "failed", None),
        ({"status": "CANCELLED"}, "failed", None),
        ({"status": "SOMETHING_NEW"}, "failed", None),
        ({"status": "ERROR", "error_code": "a b/../c"}, "failed", "a_b_.._c"),
        ({}, "failed", None),
        ([], "failed", None),
    ],
)
def test_status_mapping(body: object, state: str, code: str | None) -> None:
    got = interpret_status(body)
    assert (got.state, got.error_code) == (state, code)


def test_plain_http_only_to_loopback() -> None:
    LlamaParseClient("http://127.0.0.1:9", "k")
    LlamaParseClient("https://api.cloud.llamaindex.ai", "k")
    with pytest.raises(ValueError, match=r"refusing LlamaParse URL http://parser\.example"):
        LlamaParseClient("http://parser.example/api", "k")
    settings = Settings.from_env(
        {
            "DOCINGEST_PARSER": "llamaparse",
            "DOCINGEST_LLAMAPARSE_API_KEY": "llx-secret-key",
            "DOCINGEST_LLAMAPARSE_URL": "http://parser.example",
        }
    )
    with pytest.raises(ConfigError, match="DOCINGEST_LLAMAPARSE_URL") as info:
        parser(settings)
    assert "llx-secret-key" not in str(info.value)


def test_callback_timeout_setting() -> None:
    assert Settings.from_env({}).parse_callback_timeout_s == 600
    assert (
        Settings.from_env(
            {"DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS": "2"}
        ).parse_callback_timeout_s
        == 2
    )
    with pytest.raises(ConfigError, match="DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS"):
        Settings.from_env({"DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS": "0"})
