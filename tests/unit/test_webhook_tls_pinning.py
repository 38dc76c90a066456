"""A pinned HTTPS delivery: it dials the checked address, yet TLS still names and verifies the host.

A TLS server on 127.0.0.1 records the SNI it is offered and presents a self-signed certificate
for the hostname: the client must send the registered hostname as SNI and must refuse the
certificate (verification stays on, against the hostname, not the address)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.webhooks.delivery import Job, send
from core.webhooks.policy import WebhookPolicy
from core.webhooks.secrets import SecretBox, generate_secret
from core.webhooks.urls import UrlRules
from worker.http_transport import HttpTransport

HOST = "hooks.partner.example"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[str | None]]]:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    offered: list[str | None] = []
    context.sni_callback = lambda _sock, server_name, _ctx: offered.append(server_name)  # type: ignore[func-returns-value]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client refuses our certificate: expected

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], offered
    listener.close()
    thread.join(5)


def test_https_is_pinned_to_the_checked_address_with_sni_and_verification_on_the_hostname(tls_server) -> None:  # type: ignore[no-untyped-def]
    port, offered = tls_server
    policy = WebhookPolicy(
        rules=UrlRules(production=True, allowed_hosts=frozenset({HOST})),  # allowed: 127.0.0.1 may be dialled
        box=SecretBox(generate_secret()),
        schedule=(1.0,),
        timeout=5.0,
        secret_grace=timedelta(0),
        queue_lease=timedelta(seconds=60),
    )
    job = Job(uuid.uuid4(), uuid.uuid4(), 1, f"https://{HOST}:{port}/hook", "msg_1", "{}", [generate_secret()])
    outcome = send(job, policy=policy, transport=HttpTransport(), resolve=lambda host, port: ["127.0.0.1"])
    assert offered == [HOST]  # the connection reached the pinned address and named the host
    assert outcome.status_code is None and outcome.error == "ConnectError"  # self-signed: refused
