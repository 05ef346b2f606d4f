"""Configuration of the s3:// blob store: URL, endpoint transport rule, AWS variables.
Nothing here talks to a server (building a boto3 client is offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docingest import bootstrap
from docingest.config import ConfigError, Settings
from docingest.store.blobs_s3 import S3BlobStore, S3Location, parse_s3_url

SECRET = "very-secret-value-0123456789"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"DOCINGEST_HOME": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://docs", S3Location("docs", "")),
        ("s3://docs/", S3Location("docs", "")),
        ("s3://my.bucket-1/phi/blobs/", S3Location("my.bucket-1", "phi/blobs")),
    ],
)
def test_parse_s3_url(url: str, location: S3Location) -> None:
    assert parse_s3_url(url) == location


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://b/../up",
        "s3://b/a//b",
        "s3://b/p?x=1",
        "http://b/p",
        "s3://b c/p",
    ],
)
def test_bad_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_s3_url(url)


def test_s3_store_is_built_from_the_environment(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        DOCINGEST_STORAGE_URL="s3://phi-docs/prod",
        DOCINGEST_S3_ENDPOINT_URL="https://abc.supabase.co/storage/v1/s3",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="eu-central-1",
    )
    assert s.s3 is not None and s.s3.region == "eu-central-1"
    assert SECRET not in repr(s)
    store = bootstrap.blob_store(s)
    assert isinstance(store, S3BlobStore)
    assert store.location == S3Location("phi-docs", "prod")
    assert store.object_name("raw/u/x.pdf.enc") == "prod/raw/u/x.pdf.enc"
    assert store.client.meta.endpoint_url == "https://abc.supabase.co/storage/v1/s3"
    assert store.client.meta.region_name == "eu-central-1"


def test_file_urls_have_no_s3_settings(tmp_path: Path) -> None:
    assert settings(tmp_path, DOCINGEST_STORAGE_URL=f"file://{tmp_path}/b").s3 is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID"),
        ({"DOCINGEST_S3_ENDPOINT_URL": "minio:9000"}, "DOCINGEST_S3_ENDPOINT_URL"),
    ],
)
def test_incomplete_s3_settings_name_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as ei:
        settings(tmp_path, DOCINGEST_STORAGE_URL="s3://b/p", **env)
    assert str(ei.value).startswith(variable) and SECRET not in str(ei.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DOCINGEST_STORAGE_URL": "s3://bad bucket/p"}, "DOCINGEST_STORAGE_URL"),
        ({"DOCINGEST_STORAGE_URL": "s3://b/../p"}, "DOCINGEST_STORAGE_URL"),
        (
            {
                "DOCINGEST_STORAGE_URL": "s3://b/p",
                "DOCINGEST_S3_ENDPOINT_URL": "http://10.1.2.3:9000",
            },
            "DOCINGEST_S3_ENDPOINT_URL",
        ),
        (
            {
                "DOCINGEST_STORAGE_URL": "s3://b/p",
                "DOCINGEST_S3_ENDPOINT_URL": "http://minio.internal",
            },
            "DOCINGEST_S3_ENDPOINT_URL",
        ),
    ],
)
def test_bad_s3_store_stops_start_up(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as ei:
        bootstrap.blob_store(settings(tmp_path, **env))
    assert str(ei.value).startswith(variable)


def test_plain_http_is_allowed_to_loopback_only(tmp_path: Path) -> None:
    for endpoint in ("http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"):
        s = settings(tmp_path, DOCINGEST_STORAGE_URL="s3://b", DOCINGEST_S3_ENDPOINT_URL=endpoint)
        assert isinstance(bootstrap.blob_store(s), S3BlobStore)
