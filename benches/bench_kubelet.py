"""``NodePrepareResources`` latency of the kubelet plugin, per claim, over its unix socket.

Run alone (``python benches/bench_kubelet.py [--quick] [--record]``) or as ``run(cfg)``,
which returns a ``Section``. Starts its own etcd + kube-apiserver with the Kubernetes tests'
launcher, creates ``claims`` ResourceClaims allocated on one DGX H100 node (1, 2, 4 or 8
GPUs each, in turn), serves the plugin (its real gRPC server on a unix socket, CDI specs
and checkpoint on the local disk) and calls it with gRPC from this process, one claim per
call, as the kubelet does for a pod with one claim:

- a first prepare (reads the claim from the apiserver, writes the CDI spec on tmpfs, as
  ``/var/run/cdi`` is on a node, replaces the checkpoint on disk, answers);
- a repeated prepare (the checkpoint answers: the kubelet retries after its own restart);
- an unprepare (removes the spec, replaces the checkpoint).

The apiserver and etcd share the machine's cores with the plugin, as they would not on a
real node, so the times are an upper bound. DESIGN.md's target: ≤ 50 ms per claim.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make `benches`, `tests` and `nvtopo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nvtopo
from benches._common import Section, Table, Target, fmt_ns, median, percentile, print_section

__all__ = ["FULL", "QUICK", "KubeletConfig", "run"]

DRIVER = "gpu.nvtopo.dev"
NODE = "bench-node"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass(frozen=True)
class KubeletConfig:
    claims: int = 200


FULL = KubeletConfig()
QUICK = KubeletConfig(claims=20)


def _claims(api: Any, n: int) -> list[tuple[str, str, str]]:
    ns = "bench"
    api.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": ns}})
    path = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
    out = []
    for i in range(n):
        k = (1, 2, 4, 8)[i % 4]
        request = {"name": "gpus", "exactly": {"deviceClassName": DRIVER, "count": k}}
        body = {"metadata": {"name": f"c{i}"}, "spec": {"devices": {"requests": [request]}}}
        made = api.request("POST", path, what="claim", body=body)
        results = [
            {"request": "gpus", "driver": DRIVER, "pool": NODE, "device": f"gpu-{g}"}
            for g in range(k)
        ]
        made["status"] = {"allocation": {"devices": {"results": results}}}
        api.request("PUT", f"{path}/c{i}/status", what="allocate", body=made)
        out.append((ns, f"c{i}", str(made["metadata"]["uid"])))
    return out


def _timed(stub: Any, request: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    answer = stub(request)
    return time.perf_counter() - t0, answer


def run(cfg: KubeletConfig = FULL) -> Section:
    import grpc
    from kubernetes import config

    from nvtopo.kube.client import RawApi
    from nvtopo.kubelet._proto import dra_v1_pb2 as pb
    from nvtopo.kubelet.prepare import ClaimPreparer
    from nvtopo.kubelet.server import KubeletPlugin
    from tests.k8s.conftest import controlplane

    section = Section("Kubelet plugin: `NodePrepareResources` per claim (`nvtopo kubelet-plugin`)")
    load = os.getloadavg()[0]
    topology = nvtopo.system("dgx-h100")
    samples: dict[str, list[float]] = {"prepare": [], "again": [], "unprepare": []}
    with tempfile.TemporaryDirectory(prefix="nvtopo-bench-kp-", dir="/tmp") as tmp:
        base = Path(tmp)
        # /var/run/cdi is on tmpfs on a real node (/var/run is /run); the checkpoint is not.
        shm = Path("/dev/shm")
        cdi_dir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else base / "cdi"
        plane = controlplane.start(base / "k8s", controlplane.build(), timeout=120)
        client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        try:
            api = RawApi(client)
            claims = _claims(api, cfg.claims)
            preparer = ClaimPreparer(
                api,
                topology,
                node=NODE,
                driver=DRIVER,
                cdi_dir=cdi_dir,
                checkpoint_path=base / "plugin" / "checkpoint.json",
            )
            plugin = KubeletPlugin(preparer, registry_dir=base / "reg", plugin_dir=base / "plugin")
            plugin.start()
            channel = grpc.insecure_channel(f"unix://{plugin.dra_socket}")
            service = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/"
            prepare = channel.unary_unary(
                service + "NodePrepareResources",
                request_serializer=pb.NodePrepareResourcesRequest.SerializeToString,
                response_deserializer=pb.NodePrepareResourcesResponse.FromString,
            )
            unprepare = channel.unary_unary(
                service + "NodeUnprepareResources",
                request_serializer=pb.NodeUnprepareResourcesRequest.SerializeToString,
                response_deserializer=pb.NodeUnprepareResourcesResponse.FromString,
            )
            try:
                for ns, name, uid in claims:
                    claim = pb.Claim(namespace=ns, name=name, uid=uid)
                    for what in ("prepare", "again"):
                        took, answer = _timed(
                            prepare, pb.NodePrepareResourcesRequest(claims=[claim])
                        )
                        assert not answer.claims[uid].error, answer.claims[uid].error
                        samples[what].append(took)
                    took, answer = _timed(
                        unprepare, pb.NodeUnprepareResourcesRequest(claims=[claim])
                    )
                    assert not answer.claims[uid].error
                    samples["unprepare"].append(took)
            finally:
                channel.close()
                plugin.stop()
        finally:
            client.close()
            plane.stop()
            shutil.rmtree(cdi_dir, ignore_errors=True)

    def row(label: str, xs: list[float]) -> tuple[str, ...]:
        return (
            label,
            fmt_ns(median(xs) * 1e9),
            fmt_ns(percentile(xs, 99) * 1e9),
            fmt_ns(max(xs) * 1e9),
        )

    section.tables.append(
        Table(
            f"{cfg.claims} claims of 1, 2, 4 and 8 GPUs on a DGX H100 node, one claim per call, "
            "gRPC over a unix socket, claims read from a local kube-apiserver",
            ("call", "median", "p99", "max"),
            (
                row(
                    "NodePrepareResources, first (API read, CDI spec, checkpoint)",
                    samples["prepare"],
                ),
                row("NodePrepareResources, repeated (from the checkpoint)", samples["again"]),
                row(
                    "NodeUnprepareResources (spec and checkpoint entry removed)",
                    samples["unprepare"],
                ),
            ),
            notes=(
                "Every write is an atomic replace with fsync of the file and its directory: "
                "the CDI spec on tmpfs (as /var/run/cdi is on a node), the checkpoint on this "
                "machine's disk, which the other jobs on this machine share; the checkpoint's "
                "two fsyncs are most of a first prepare's time and all of its tail.",
                f"Load average when the run started: {load:.1f} (other jobs on this machine); "
                "the repeated prepare does no I/O, so its tail is the machine's.",
            ),
        )
    )
    p99 = percentile(samples["prepare"], 99)
    section.targets.append(
        Target(
            "kubelet plugin",
            "`NodePrepareResources` ≤ 50 ms per claim",
            f"p99 {fmt_ns(p99 * 1e9)}, median {fmt_ns(median(samples['prepare']) * 1e9)} "
            f"({cfg.claims} claims)",
            p99 <= 0.050,
        )
    )
    return section


def record(section: Section, path: Path = RESULTS) -> None:
    """Put the section into RESULTS.md in place of an earlier one of the same title."""
    from benches._common import machine

    info = machine()
    body = [f"## {section.title}", ""]
    body.append(f"Machine: {info['CPU']}, {info['cores']} cores, {info['Python']}, {info['date']}.")
    body.append("")
    body += [t.markdown() for t in section.tables]
    body += [
        f"Target: {t.what}, {t.target}: {t.measured} → **{t.status}**." for t in section.targets
    ]
    text = path.read_text() if path.exists() else ""
    block = "\n".join(body).rstrip() + "\n"
    pattern = re.compile(rf"^## {re.escape(section.title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 claims instead of 200")
    parser.add_argument("--record", action="store_true", help=f"write the section into {RESULTS}")
    args = parser.parse_args(argv)
    section = run(QUICK if args.quick else FULL)
    print_section(section)
    if args.record:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
