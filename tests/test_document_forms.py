"""Annotations that differ only in who the node is (GPU UUIDs, fabric and platform records,
node name) are decoded once per form, and every node still reads exactly as its own
document says: the same topology as the validating reader gives, its own UUIDs included."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.dra import annotation
from nvtopo.dra.annotation import decode_topology
from nvtopo.dra.attributes import device_name
from nvtopo.dra.publish import cluster_slices
from nvtopo.exceptions import ParseError
from nvtopo.formats import _identity, jsonio
from nvtopo.formats._parts import clear_parts
from nvtopo.kube.readback import cluster_from_objects
from nvtopo.model import NodeTopology

DRIVER = "gpu.nvtopo.dev"


@pytest.fixture(autouse=True)
def _cold() -> None:
    """Each test starts as a fresh reader: no decoded annotation, part or form."""
    annotation._topology.cache_clear()
    clear_parts()


def _doc() -> dict[str, Any]:
    return jsonio.node_to_json(nvtopo.system("gb200-tray"))


def _tray(seed: int, *, name: str | None = None, serial: str | None = None) -> dict[str, Any]:
    """The tray document with identity of its own: UUIDs, name, chassis, tray, rack fabric."""
    doc = _doc()
    doc["name"] = name if name is not None else f"tray-{seed}"
    for g in doc["gpus"]:
        g["uuid"] = f"GPU-{seed:08x}-0000-0000-0000-{g['index']:012x}"
        g["platform"]["chassisSerial"] = serial if serial is not None else f"18210{seed // 18}"
        g["platform"]["tray"] = seed % 18
        g["fabric"]["clusterUuid"] = f"00000000-0000-0000-0000-{seed // 18:012x}"
    return doc


def _text(doc: dict[str, Any] | str) -> str:
    raw = doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"), sort_keys=True)
    return "gzip+base64:" + base64.b64encode(gzip.compress(raw.encode(), mtime=0)).decode()


def _read(doc: dict[str, Any] | str) -> NodeTopology:
    return decode_topology(_text(doc), where="ResourceSlice n-0")


def _strict(doc: dict[str, Any] | str) -> NodeTopology:
    return jsonio.node_from_json(doc)


def _whole(raw: str) -> NodeTopology:
    """How the reader reads the document on its own (no form): as it always has."""
    return annotation._from_raw(raw)


def _reads_as_whole(raw: str) -> None:
    """Through its form, ``raw`` reads as it reads on its own, or fails the same way."""
    try:
        expected = _whole(raw)
    except ParseError:
        with pytest.raises(ParseError):
            _read(raw)
        return
    assert _read(raw) == expected


def test_trays_of_one_form_keep_their_own_identity() -> None:
    docs = [_tray(1), _tray(40), _tray(77)]
    whole: list[str] = []

    def decode(raw: str) -> NodeTopology:
        whole.append(raw)
        return annotation._from_raw(raw)

    a, b, c = (_identity.node_from_text(_raw(d), decode) for d in docs)
    # The first two are decoded whole (the second makes the form), the third from the form.
    assert len(whole) == 2 and len(_identity._forms) == 1
    assert [a, b, c] == [_strict(d) for d in docs]
    assert c.name == "tray-77" and b.name == "tray-40"
    assert [g.uuid for g in c.gpus] == [f"GPU-0000004d-0000-0000-0000-{i:012x}" for i in range(4)]
    assert {g.platform.tray for g in c.gpus if g.platform} == {77 % 18}
    assert {g.platform.chassis_serial for g in c.gpus if g.platform} == {"182104"}
    assert c.gpus[0].fabric is not None and c.gpus[0].fabric.cluster_uuid.endswith("4")
    # Everything else is the form's, shared.
    assert c.pairs is b.pairs and c.nics is b.nics and c.gpus[0].nvlinks is b.gpus[0].nvlinks
    assert c.numa_cpus == b.numa_cpus and c.numa_cpus is not b.numa_cpus


def test_a_cluster_read_back_gets_each_nodes_uuids_from_one_form() -> None:
    clear_parts()
    cluster = nvtopo.cluster("gb200-nvl72x2")
    slices = [s for pool in cluster_slices(cluster, driver=DRIVER).values() for s in pool]
    back = cluster_from_objects(slices, driver=DRIVER)
    assert len(_identity._forms) == 1
    by_name = {n.name: n for n in cluster.nodes}
    uuids: set[str] = set()
    for node in back.nodes:
        assert node.topology == by_name[node.name].topology
        published = {
            d["name"]: d["attributes"]["uuid"]["string"]
            for s in slices
            if s["spec"]["pool"]["name"] == node.name
            for d in s["spec"]["devices"]
        }
        assert {device_name(g): g.uuid for g in node.topology.gpus} == published
        uuids |= set(published.values())
    assert len(uuids) == 4 * len(cluster.nodes)


def _raw(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize(
    "edit",
    [
        # A UUID with an escape, a brace in a platform string, a nested object in a platform
        # record: the form is not cut there, the document is read whole.
        lambda raw: raw.replace('"uuid":"GPU-', '"uuid":"\\u0047PU-', 1),
        lambda raw: raw.replace('"chassisSerial":"182100"', '"chassisSerial":"18}2{100"', 1),
        lambda raw: raw.replace('"platform":{', '"platform":{"x":{"y":1},', 1),
        # A repeated key: the parse keeps the last, so does the form's reading.
        lambda raw: raw.replace('"uuid":"GPU-', '"uuid":"dropped","uuid":"GPU-', 1),
        # A mark of the document's own in the text around the cuts.
        lambda raw: raw.replace('"name":"tray-', '"name":"\\u00000', 1),
        lambda raw: raw.replace('"system":"gb200-tray"', '"system":"\\u00001"', 1),
    ],
)
def test_odd_texts_read_as_they_read_whole(edit: Any) -> None:
    clear_parts()
    for seed in (2, 3, 4):  # the third reads through the form, where there is one
        _reads_as_whole(edit(_raw(_tray(seed))))


def test_a_tray_whose_own_values_are_bad_is_refused_as_ever() -> None:
    clear_parts()
    _read(_tray(5))
    twin = _tray(6)
    twin["gpus"][1]["uuid"] = twin["gpus"][0]["uuid"]
    with pytest.raises(ParseError, match="same UUID") as err:
        _read(twin)
    assert str(err.value).startswith("ResourceSlice n-0: ") and "\n" not in str(err.value)
    bad = _tray(7)
    bad["gpus"][2]["fabric"]["cliqueId"] = "seven"
    with pytest.raises(ParseError, match=r"\$\.gpus\[2\]\.fabric\.cliqueId"):
        _read(bad)


@pytest.mark.parametrize("cut", ["short", "more"])
def test_a_cut_or_padded_gzip_is_one_line(cut: str) -> None:
    body = base64.b64decode(_text(_tray(8)).removeprefix("gzip+base64:"))
    body = body[:-5] if cut == "short" else body + b"\x1f\x8b"
    text = "gzip+base64:" + base64.b64encode(body).decode()
    with pytest.raises(ParseError, match="is not readable") as err:
        decode_topology(text, where="ResourceSlice n-1")
    assert "\n" not in str(err.value)


def test_a_gzip_of_two_members_reads_as_one() -> None:
    raw = _raw(_tray(9)).encode()
    body = gzip.compress(raw[:500], mtime=0) + gzip.compress(raw[500:], mtime=0)
    text = "gzip+base64:" + base64.b64encode(body).decode()
    assert decode_topology(text) == _strict(_tray(9))


_ANY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(uuids=st.lists(_ANY, min_size=12, max_size=12), names=st.lists(_ANY, min_size=3, max_size=3))
def test_any_identity_values_read_as_they_read_whole(uuids: list[str], names: list[str]) -> None:
    """Quotes, backslashes, braces and control characters in the per-node fields: each of
    three trays of one form reads exactly as its own document says."""
    clear_parts()
    for t in range(3):
        doc = _tray(t, name=names[t], serial=uuids[4 * t][::-1])
        for i, g in enumerate(doc["gpus"]):
            g["uuid"] = uuids[4 * t + i]
        _reads_as_whole(json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=t == 1))
