"""Bad requests get one precise status each, and leave the server serving; TLS and limits."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

import nvtopo
from nvtopo.exceptions import NvtopoError
from nvtopo.service import Client, PlacementServer, PlacementState, ServiceError, Tls
from nvtopo.service._proto import placement_pb2 as pb
from nvtopo.service._proto import placement_pb2_grpc as pb_grpc

from .serving import Served, start_serve

OK = pb.PlacementRequest(gpus=4, nodes=1, domain=pb.DOMAIN_REQUIRED)

BAD: list[tuple[str, Any, grpc.StatusCode, str]] = [
    ("Place", pb.PlaceRequest(request=pb.PlacementRequest(gpus=-4), dry_run=True),
     grpc.StatusCode.INVALID_ARGUMENT, "request.gpus: must be at least 1, got -4"),
    ("Place", pb.PlaceRequest(dry_run=True),
     grpc.StatusCode.INVALID_ARGUMENT, "request: required"),
    ("Place", pb.PlaceRequest(request=pb.PlacementRequest(gpus=8, nodes=-2), dry_run=True),
     grpc.StatusCode.INVALID_ARGUMENT, "request.nodes: must be 0"),
    ("Place", pb.PlaceRequest(request=pb.PlacementRequest(gpus=9, nodes=2), dry_run=True),
     grpc.StatusCode.INVALID_ARGUMENT, "request.nodes: 9 GPUs do not split evenly over 2"),
    ("Place", pb.PlaceRequest(request=pb.PlacementRequest(gpus=4, domain=9), dry_run=True),
     grpc.StatusCode.INVALID_ARGUMENT, "request.domain: unknown value 9"),
    ("Place", pb.PlaceRequest(request=pb.PlacementRequest(gpus=76, nodes=19,
                                                          domain=pb.DOMAIN_REQUIRED)),
     grpc.StatusCode.FAILED_PRECONDITION, "clique"),
    ("Explain", pb.ExplainRequest(request=pb.PlacementRequest(gpus=0)),
     grpc.StatusCode.INVALID_ARGUMENT, "request.gpus: must be at least 1, got 0"),
    ("Reserve", pb.ReserveRequest(request=OK, ttl_seconds=0),
     grpc.StatusCode.INVALID_ARGUMENT, "ttl_seconds: must be 1 to 86400, got 0"),
    ("Reserve", pb.ReserveRequest(request=OK, ttl_seconds=-5),
     grpc.StatusCode.INVALID_ARGUMENT, "ttl_seconds: must be 1 to 86400, got -5"),
    ("Reserve", pb.ReserveRequest(request=OK, ttl_seconds=30, idempotency_key="has space"),
     grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key: must be 1 to 128 characters"),
    ("Reserve", pb.ReserveRequest(request=OK, ttl_seconds=30, idempotency_key="k" * 129),
     grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key: must be 1 to 128 characters"),
    ("Reserve", pb.ReserveRequest(request=OK, ttl_seconds=30, idempotency_key="x" * 200_000),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ("Release", pb.ReleaseRequest(reservation_id="nope"),
     grpc.StatusCode.INVALID_ARGUMENT, "reservation_id: must be 'r-' and 16 hex digits"),
    ("Release", pb.ReleaseRequest(),
     grpc.StatusCode.INVALID_ARGUMENT, "reservation_id: required"),
    ("Release", pb.ReleaseRequest(reservation_id="r-0123456789abcdef"),
     grpc.StatusCode.NOT_FOUND, "no live reservation r-0123456789abcdef"),
    ("Select", pb.SelectRequest(node="no-such-node", count=1),
     grpc.StatusCode.NOT_FOUND, "node: no node 'no-such-node' in the cluster"),
    ("Select", pb.SelectRequest(count=1),
     grpc.StatusCode.INVALID_ARGUMENT, "node: required"),
    ("Select", pb.SelectRequest(node="h100-0", count=-1),
     grpc.StatusCode.INVALID_ARGUMENT, "count: must be 1 to 8"),
    ("Select", pb.SelectRequest(node="h100-0", count=2, required=[12]),
     grpc.StatusCode.INVALID_ARGUMENT, "required: GPU 12 is not on node h100-0"),
    ("Select", pb.SelectRequest(node="h100-0", count=2, required=[2]),
     grpc.StatusCode.FAILED_PRECONDITION, "2"),
    ("Select", pb.SelectRequest(node="h100-0", count=6),
     grpc.StatusCode.FAILED_PRECONDITION, "available"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "message", "code", "text"), BAD, ids=[b[3][:40] for b in BAD])
def test_bad_request_gets_a_precise_status(
    served: Served, method: str, message: Any, code: grpc.StatusCode, text: str
) -> None:
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.PlacementServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            getattr(stub, method)(message, timeout=10)
        assert err.value.code() == code, err.value.details()
        assert text in err.value.details()
        # The server is unharmed: a good call right after works.
        answer = stub.Place(pb.PlaceRequest(request=OK, dry_run=True), timeout=10)
        assert answer.placement.gpu_count == 4
    assert served.proc.poll() is None


def test_deadlines_end_streams(served: Served) -> None:
    with served.client() as c:
        stream = c.watch_capacity(timeout=1.0)
        next(stream)
        with pytest.raises(ServiceError) as late:
            next(stream)
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert c.place(gpus=1).gpu_count == 1


def test_overload_is_resource_exhausted(tmp_path: Path) -> None:
    s = start_serve(["--source", "system:gb200-nvl72x2", "--max-concurrent", "3"], tmp_path)
    try:
        with Client(s.target) as c:
            streams = [c.watch_capacity(timeout=30) for _ in range(3)]
            for st in streams:
                next(st)
            with pytest.raises(ServiceError) as full:
                c.place(gpus=4)
            assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            for st in streams:
                st.close()
            for _ in range(50):  # the server sees the cancellations shortly
                try:
                    assert c.place(gpus=4).gpu_count == 4
                    break
                except ServiceError as exc:
                    assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                    time.sleep(0.1)
            else:
                raise AssertionError("still exhausted after the streams closed")
    finally:
        s.stop()


def _pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nvtopo test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, san in (("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                     ("client", [x509.DNSName("scheduler")])):  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, who)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2 + len(out))
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        out[f"{who}-cert"] = d / f"{who}.pem"
        out[f"{who}-key"] = d / f"{who}-key.pem"
        out[f"{who}-cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return out


def test_tcp_needs_tls_and_mtls_checks_clients(tmp_path: Path) -> None:
    state = PlacementState(nvtopo.cluster("gb200-nvl72x2"))
    with pytest.raises(NvtopoError, match="TCP needs TLS"):
        PlacementServer(state, tcp="127.0.0.1:0")
    run = subprocess.run(
        [sys.executable, "-m", "nvtopo", "serve", "--source", "system:dgx-h100", "--socket", "",
         "--tcp", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "TCP needs TLS" in run.stderr

    pki = _pki(tmp_path)
    tls = Tls(pki["server-cert"], pki["server-key"], client_ca=pki["ca"])
    server = PlacementServer(state, tcp="127.0.0.1:0", tls=tls).start()
    try:
        target = f"127.0.0.1:{server.port}"
        with Client(target, root_ca=pki["ca"], cert=pki["client-cert"],
                    key=pki["client-key"]) as c:  # fmt: skip
            assert c.place(gpus=72, nodes=18, domain="required").gpu_count == 72
        with Client(target, root_ca=pki["ca"], timeout=5) as anonymous:
            with pytest.raises(ServiceError) as refused:
                anonymous.place(gpus=1)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        with Client(target, timeout=5) as plaintext:
            with pytest.raises(ServiceError) as refused:
                plaintext.place(gpus=1)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--source", "file:/no/such.json"], "/no/such.json: no such file"),
        (["--socket", "/proc/no/such/dir/p.sock"], "unix socket /proc/no/such/dir/p.sock:"),
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
        (["--socket", "", "--tcp", "127.0.0.1:0", "--tls-cert", "/no/c.pem", "--tls-key",
          "/no/k.pem"], "TLS: cannot read /no/"),
    ],
)  # fmt: skip
def test_serve_refuses_bad_options_in_one_line(args: list[str], line: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "nvtopo", "serve", "--source", "system:dgx-h100", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert line in run.stderr
