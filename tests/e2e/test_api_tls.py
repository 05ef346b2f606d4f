"""`docingest api --ssl-certfile/--ssl-keyfile`: the API itself terminates TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from docingest.testing.procs import free_port, run_process
from tests.e2e.conftest import run_cli, stack_env


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_api_serves_https_only_with_the_given_certificate(dsn: str, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    args = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
    args += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    env = stack_env(dsn, tmp_path / "home")
    url = f"https://127.0.0.1:{port}/healthz"
    with run_process(args, env=env, ready_url=url, timeout_s=60, verify=trust):
        with httpx.Client(verify=trust) as client:
            served = client.get(url)
            assert served.status_code == 200
            assert served.headers["strict-transport-security"] == (
                "max-age=31536000; includeSubDomains"
            )
        with httpx.Client() as client, pytest.raises(httpx.TransportError):
            client.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP on the TLS port
        with httpx.Client() as client, pytest.raises(httpx.ConnectError):
            client.get(url)  # the system trust store does not know this certificate


def test_certificate_without_key_is_one_clear_error(dsn: str, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    done = run_cli(stack_env(dsn, tmp_path / "home"), "api", "--ssl-certfile", str(cert))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "--ssl-certfile and --ssl-keyfile must be given together" in lines[0]
