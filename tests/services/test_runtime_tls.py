"""TLS and mutual TLS with certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.server import ServerThread
from mathforge.runtime.tls import ClientTLS

from tests.services.echo_service import EchoConfig, EchoService
from tests.services.test_runtime_server import EchoClient


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[str, str]:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


def _cert(
    subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool = False, server: bool = False
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _cert("mathforge test CA", ca_key, None, ca_key, ca=True)
    rogue_ca = _cert("rogue CA", rogue_key, None, rogue_key, ca=True)
    files: dict[str, str] = {}
    files["ca"], _ = _write(d / "ca", ca_key, ca)
    server_key, client_key, stranger_key = _key(), _key(), _key()
    files["server_crt"], files["server_key"] = _write(
        d / "server", server_key, _cert("localhost", server_key, ca.subject, ca_key, server=True)
    )
    files["client_crt"], files["client_key"] = _write(
        d / "client", client_key, _cert("trainer", client_key, ca.subject, ca_key)
    )
    files["stranger_crt"], files["stranger_key"] = _write(
        d / "stranger", stranger_key, _cert("stranger", stranger_key, rogue_ca.subject, rogue_key)
    )
    return files


def test_tls_client_with_the_ca_connects(pki):
    config = EchoConfig(port=0, metrics_port=-1, tls_cert=pki["server_crt"], tls_key=pki["server_key"])
    with ServerThread(EchoService(config)) as server:
        client = EchoClient(f"localhost:{server.port}", tls=ClientTLS(ca=pki["ca"]))
        assert client.score(["abc"]) == [3.0]
        plain = EchoClient(f"localhost:{server.port}", retry=NO_RETRY)
        with pytest.raises(grpc.RpcError) as err:
            plain.score(["abc"], timeout_s=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_accepts_a_signed_client_and_refuses_a_stranger(pki):
    config = EchoConfig(
        port=0,
        metrics_port=-1,
        tls_cert=pki["server_crt"],
        tls_key=pki["server_key"],
        tls_client_ca=pki["ca"],
    )
    with ServerThread(EchoService(config)) as server:
        target = f"localhost:{server.port}"
        good = EchoClient(target, tls=ClientTLS(ca=pki["ca"], cert=pki["client_crt"], key=pki["client_key"]))
        assert good.score(["abcd"]) == [4.0]
        for tls in (
            ClientTLS(ca=pki["ca"]),
            ClientTLS(ca=pki["ca"], cert=pki["stranger_crt"], key=pki["stranger_key"]),
        ):
            stranger = EchoClient(target, tls=tls, retry=NO_RETRY)
            with pytest.raises(grpc.RpcError) as err:
                stranger.score(["abc"], timeout_s=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
