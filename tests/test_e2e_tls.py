"""TLS on the public listener, with partysocket over wss://."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from daemons import Daemon, DaemonFactory
from node_clients import Clients
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import RawClient


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def tls_config(cert: Path, key: Path) -> str:
    return f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n\n' + DEFAULT_BINDING_TOML


def served_certificate(daemon: Daemon) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((daemon.host, daemon.port), timeout=5) as sock,
        context.wrap_socket(sock) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate


def test_partysocket_over_wss_and_https_publish(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "one")
    daemon = start_daemon(tls_config(cert, key))
    clients = Clients(daemon)
    try:
        clients.connect("a", tls=True)
        clients.connect("b", tls=True, query={"topics": ["t"]})
        clients.send("a", {"topic": "t", "data": "over tls"})
        assert clients.message("b") == {"topic": "t", "data": "over tls"}
        context = ssl.create_default_context(cafile=str(cert))
        request = urllib.request.Request(
            f"https://{daemon.address}/parties/pubsub/default",
            data=b'{"topic":"t","data":"https"}',
            method="POST",
        )
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            assert response.read() == b"OK"
        assert clients.message("b") == {"topic": "t", "data": "https"}
        big = "x" * 200_000  # many TLS records, one message
        clients.send("a", {"topic": "t", "data": big})
        assert clients.message("b")["data"] == big
    finally:
        clients.stop()


def test_plain_http_on_the_tls_port_is_dropped(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = start_daemon(tls_config(*self_signed(tmp_path, "one")))
    raw = RawClient(daemon)
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not raw.read_all(timeout=5).startswith(b"HTTP/1.1 200")
    assert daemon.alive()


def test_sighup_loads_a_renewed_certificate(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "one")
    daemon = start_daemon(tls_config(cert, key))
    clients = Clients(daemon)
    try:
        clients.connect("held", tls=True)
        before = served_certificate(daemon)
        renewed_cert, renewed_key = self_signed(tmp_path, "two")
        cert.write_bytes(renewed_cert.read_bytes())
        key.write_bytes(renewed_key.read_bytes())
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_log("TLS certificate loaded")
        assert served_certificate(daemon) != before
        clients.send("held", {"topic": "t", "data": "still connected"})
        assert clients.message("held")["data"] == "still connected"
    finally:
        clients.stop()
