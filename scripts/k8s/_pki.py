"""Throwaway credentials for the test control plane.

A CA, a serving certificate for 127.0.0.1, a service-account signing key and a kubeconfig.
Needs the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from .build import ControlPlaneError

__all__ = ["Pki", "render_kubeconfig", "write_pki"]


@dataclass(frozen=True)
class Pki:
    """PEM file paths: CA certificate, serving certificate and key, service-account keys."""

    ca_file: Path
    serving_cert: Path
    serving_key: Path
    service_account_public: Path
    service_account_private: Path


def write_pki(directory: Path) -> Pki:
    """Write the CA, serving pair and service-account pair as PEM files in ``directory``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:
        raise ControlPlaneError(
            "starting the control plane needs the 'cryptography' package "
            "(pip install cryptography) for its certificates"
        ) from exc

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nvtopo-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())

    paths = [directory / n for n in ("ca.crt", "server.crt", "server.key", "sa.pub", "sa.key")]
    contents = [
        ca_cert.public_bytes(serialization.Encoding.PEM),
        serving_cert.public_bytes(serialization.Encoding.PEM),
        pem_key(serving_key),
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        pem_key(sa_key),
    ]
    for path, data in zip(paths, contents, strict=True):
        path.write_bytes(data)
        path.chmod(0o600)
    return Pki(*paths)


def render_kubeconfig(url: str, ca_file: Path, token: str, user: str) -> str:
    """A kubeconfig (JSON, which every YAML reader accepts) for one token user."""
    cluster = {"server": url, "certificate-authority": str(ca_file)}
    context = {"cluster": "nvtopo-test", "user": user}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "nvtopo-test", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "nvtopo-test", "context": context}],
        "current-context": "nvtopo-test",
    }
    return json.dumps(config, indent=2) + "\n"
