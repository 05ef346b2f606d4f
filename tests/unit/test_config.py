"""Settings by pydantic-settings (config/environment.py): every variable typed, bounded and
named in its one-line error, secrets never echoed nor shown in a repr, cross-variable checks,
an empty variable as unset, and a given mapping read instead of the process environment."""

from __future__ import annotations

import pytest

from docingest.config import ConfigError, Settings, revealed
from docingest.config.environment import Environment

SECRET = "s3cr3t-value-that-must-never-be-echoed"


def _error(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DOCINGEST_LEASE_SECONDS": "4"}, "DOCINGEST_LEASE_SECONDS must be >= 5"),
        ({"DOCINGEST_LEASE_SECONDS": "sixty"}, "DOCINGEST_LEASE_SECONDS must be an integer"),
        ({"DOCINGEST_EMBED_BATCH_SIZE": "257"}, "DOCINGEST_EMBED_BATCH_SIZE must be <= 256"),
        ({"DOCINGEST_PARSER": "tika"}, "DOCINGEST_PARSER must be one of local or llamaparse"),
        ({"DOCINGEST_DB_ENCRYPTED_AT_REST": "maybe"}, "DOCINGEST_DB_ENCRYPTED_AT_REST must be true or false"),
        ({"DOCINGEST_EMBED_PRICE_PER_MTOK": "nan"}, "DOCINGEST_EMBED_PRICE_PER_MTOK must be a finite number"),
        ({"DOCINGEST_PUBLIC_URL": "ftp://x"}, "DOCINGEST_PUBLIC_URL must be a URL starting with http or https://"),
        ({"DOCINGEST_EMBED_TPM": "10"}, "DOCINGEST_EMBED_TPM must be 0 (unlimited) or >= 1000"),
        ({"DOCINGEST_EMBEDDER": "openai"}, "DOCINGEST_OPENAI_API_KEY (or OPENAI_API_KEY) is required"),
        ({"DOCINGEST_EMBED_DIMENSIONS": "100"}, "DOCINGEST_EMBED_DIMENSIONS must be one of 64, 128, 256"),
        (
            {"DOCINGEST_API_ANON_RATE_PER_SECOND": "50", "DOCINGEST_API_ANON_BURST": "10"},
            "DOCINGEST_API_ANON_BURST must be >= DOCINGEST_API_ANON_RATE_PER_SECOND",
        ),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_its_variable(env: dict[str, str], message: str) -> None:
    assert _error(**env).startswith(message)


def test_a_secret_is_never_echoed_and_never_in_a_repr() -> None:
    message = _error(DOCINGEST_JWT_SECRET="short-" + SECRET[:10])
    assert message == "DOCINGEST_JWT_SECRET must be at least 32 characters"
    assert SECRET[:10] not in message
    settings = Settings.from_env(
        {
            "DOCINGEST_JWT_SECRET": SECRET,
            "DOCINGEST_EMBEDDER": "openai",
            "OPENAI_API_KEY": SECRET,  # the fallback name
            "DOCINGEST_MASTER_KEY": SECRET,
        }
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert revealed(settings.jwt_secret) == SECRET
    assert revealed(settings.openai_api_key) == SECRET
    assert revealed(settings.webhook_secret) is None


def test_defaults_empty_values_and_the_embedders_own_width() -> None:
    settings = Settings.from_env({"DOCINGEST_LEASE_SECONDS": "", "DOCINGEST_EMBED_RPM": "0"})
    assert settings.lease_seconds == 60 and settings.embed_rpm is None
    assert settings.embedder == "wordllama" and settings.embed_dimensions == 256
    hashed = Settings.from_env({"DOCINGEST_EMBEDDER": "hash"})
    assert hashed.embed_dimensions == 1536
    assert Settings.from_env({"DOCINGEST_EMBED_DIMENSIONS": "64"}).embed_dimensions == 64


def test_a_given_mapping_is_read_instead_of_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCINGEST_LEASE_SECONDS", "7")
    assert Settings.from_env({}).lease_seconds == 60
    assert Settings.from_env().lease_seconds == 7  # None: the process environment


def test_every_variable_is_listed_once() -> None:
    names = Environment.variables()
    assert len(names) == len(set(names))
    assert {"DOCINGEST_HOME", "DOCINGEST_LEASE_SECONDS", "OPENAI_API_KEY", "AWS_REGION"} <= set(
        names
    )
