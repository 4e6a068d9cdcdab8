"""Read the XML report of ``nvidia-smi -q -x``.

The report describes each GPU (name, UUID, memory, PCI bus id, MIG mode, multi-node NVLink
fabric) but holds no topology matrix, so GPU pairs stay at their defaults; combine it with
``nvidia-smi topo -m`` for paths. Element names are those of the ``nvsmi_device_v12`` and
``v13`` DTDs (drivers 535 to 580); elements a driver does not print are left unset.

Examples
--------
>>> xml = '''<?xml version="1.0" ?>
... <nvidia_smi_log>
...   <driver_version>580.105.08</driver_version>
...   <cuda_version>13.0</cuda_version>
...   <gpu id="00000008:01:00.0">
...     <product_name>NVIDIA GB200</product_name>
...     <uuid>GPU-2b0e4e0a-8f2c-4b7e-9d4a-1f7c3b2a9e01</uuid>
...     <fb_memory_usage><total>189471 MiB</total></fb_memory_usage>
...     <fabric>
...       <state>Completed</state><status>Success</status>
...       <cliqueId>7</cliqueId><clusterUuid>5cd30dc8-2f7e-4c3d-9a51-0e0f3a7d2b11</clusterUuid>
...       <health><summary>Healthy</summary></health>
...     </fabric>
...   </gpu>
... </nvidia_smi_log>'''
>>> t = parse_smi_xml(xml)
>>> t.gpu(0).memory_mib, t.clique
(189471, '5cd30dc8-2f7e-4c3d-9a51-0e0f3a7d2b11.7')
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.parsers import expat

from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats._smi_fabric import read_fabric
from nvtopo.model import Fabric, Gpu, NodeTopology, Platform
from nvtopo.model.limits import LIMITS, MAX_GPUS, MAX_INPUT_BYTES

__all__ = ["parse_smi_xml"]

_MIB_RE = re.compile(r"^(\d+)\s*MiB$")
_ABSENT = {"", "N/A", "Not Found", "Not Supported", "[N/A]"}


class _Document:
    """The element tree of the report, with the line each element starts on."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        # A capture may start with a prompt or other output; the document starts at its
        # XML declaration (or root element), and line numbers count from the capture's top.
        start = min(
            (i for i in (text.find("<?xml"), text.find("<nvidia_smi_log")) if i >= 0), default=0
        )
        self._offset = text.count("\n", 0, start)
        self._lines: dict[int, int] = {}
        builder = ET.TreeBuilder()
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

        def on_start(tag: str, attrs: dict[str, str]) -> None:
            element = builder.start(tag, attrs)
            self._lines[id(element)] = parser.CurrentLineNumber + self._offset

        parser.StartElementHandler = on_start
        parser.EndElementHandler = builder.end
        parser.CharacterDataHandler = builder.data
        try:
            parser.Parse(text[start:], True)
        except expat.ExpatError as exc:
            raise ParseError(
                f"malformed XML: {expat.ErrorString(exc.code)} (column {exc.offset + 1})",
                source=source,
                line=(exc.lineno or 1) + self._offset,
            ) from None
        self.root: ET.Element = builder.close()

    def line(self, element: ET.Element) -> int | None:
        return self._lines.get(id(element))

    def error(self, message: str, element: ET.Element) -> ParseError:
        return ParseError(message, source=self.source, line=self.line(element))

    def text(self, parent: ET.Element, path: str) -> str | None:
        """Stripped text at ``path`` under ``parent``; None when absent or ``N/A``."""
        element = parent.find(path)
        if element is None:
            return None
        value = " ".join((element.text or "").split())
        return None if value in _ABSENT else value

    def integer(self, parent: ET.Element, path: str, limit: str) -> int | None:
        """The number at ``path``, inside :data:`nvtopo.model.limits.LIMITS` ``[limit]``."""
        value = self.text(parent, path)
        if value is None:
            return None
        element = parent.find(path)
        assert element is not None
        try:
            number = int(value, 0)
        except ValueError:
            raise self.error(f"<{path}> is {value!r}, not a number", element) from None
        bound = LIMITS[limit]
        if not bound.minimum <= number <= bound.maximum:
            raise self.error(
                f"<{path}> is {number}, out of range ({bound.minimum} to {bound.maximum})",
                element,
            )
        return number


def _memory(doc: _Document, gpu: ET.Element) -> int | None:
    value = doc.text(gpu, "fb_memory_usage/total")
    if value is None:
        return None
    match = _MIB_RE.match(value)
    if not match:
        element = gpu.find("fb_memory_usage/total")
        assert element is not None
        raise doc.error(f"<fb_memory_usage><total> is {value!r}, not '<n> MiB'", element)
    mib = int(match.group(1))
    if mib > LIMITS["memoryMiB"].maximum:
        element = gpu.find("fb_memory_usage/total")
        assert element is not None
        raise doc.error(
            f"<fb_memory_usage><total> is {mib} MiB, more than {LIMITS['memoryMiB'].maximum}",
            element,
        )
    return mib


def _mig_mode(doc: _Document, gpu: ET.Element) -> bool | None:
    value = doc.text(gpu, "mig_mode/current_mig")
    if value is None:
        return None
    if value.lower() in ("enabled", "disabled"):
        return value.lower() == "enabled"
    element = gpu.find("mig_mode/current_mig")
    assert element is not None
    raise doc.error(f"<current_mig> is {value!r}, expected Enabled or Disabled", element)


def _platform(doc: _Document, gpu: ET.Element) -> Platform | None:
    info = gpu.find("platformInfo")
    if info is None:
        return None
    platform = Platform(
        chassis_serial=doc.text(info, "chassis_serial_number"),
        slot=doc.integer(info, "slot_number", "slot"),
        tray=doc.integer(info, "tray_index", "tray"),
        host_id=doc.integer(info, "host_id", "hostId"),
        module_id=doc.integer(info, "module_id", "moduleId"),
    )
    return None if platform == Platform() else platform


def _fabric(doc: _Document, gpu: ET.Element) -> Fabric | None:
    element = gpu.find("fabric")
    if element is None:
        return None  # drivers before 535 print no fabric section

    def field(path: str) -> tuple[str | None, int | None]:
        found = element.find(path)
        return doc.text(element, path), (doc.line(found) if found is not None else None)

    try:
        return read_fabric(field)
    except ValueError as exc:
        message, line = exc.args
        raise ParseError(message, source=doc.source, line=line) from None


def _gpu(doc: _Document, gpu: ET.Element, index: int) -> Gpu:
    return Gpu(
        index=index,
        uuid=doc.text(gpu, "uuid"),
        name=doc.text(gpu, "product_name"),
        brand=doc.text(gpu, "product_brand"),
        architecture=doc.text(gpu, "product_architecture"),
        # -q -x prints no compute capability today; read it where a driver adds it.
        compute_capability=doc.text(gpu, "compute_cap"),
        memory_mib=_memory(doc, gpu),
        pci_bus_id=doc.text(gpu, "pci/pci_bus_id") or gpu.get("id"),
        mig_mode=_mig_mode(doc, gpu),
        minor=doc.integer(gpu, "minor_number", "minor"),
        fabric=_fabric(doc, gpu),
        platform=_platform(doc, gpu),
    )


def parse_smi_xml(text: str, *, source: str = "<text>") -> NodeTopology:
    """Parse the output of ``nvidia-smi -q -x`` into a :class:`NodeTopology`.

    Parameters
    ----------
    text
        The XML report (text before its ``<?xml`` declaration is skipped).
    source
        Where the text came from, for error messages (a file name).

    Returns
    -------
    NodeTopology
        One :class:`~nvtopo.model.Gpu` per ``<gpu>`` element, indexed in document order
        (``nvidia-smi`` lists GPUs in NVML index order), with UUID, product name, brand,
        architecture, framebuffer size in MiB, PCI bus id, MIG mode, minor number, rack
        position (``platformInfo``) and the multi-node NVLink fabric state; the node's
        driver and CUDA versions. No pairs: the report has no topology matrix.

    Raises
    ------
    ParseError
        The text is not well-formed XML, not an ``nvidia-smi`` report, or holds values
        that cannot be read (memory, MIG mode, fabric state); the message names the line.
    """
    if len(text) > MAX_INPUT_BYTES:
        raise ParseError(f"{len(text)} characters; at most {MAX_INPUT_BYTES}", source=source)
    doc = _Document(text, source)
    root = doc.root
    if root.tag != "nvidia_smi_log":
        raise doc.error(
            f"root element is <{root.tag}>, expected <nvidia_smi_log>: "
            "is this `nvidia-smi -q -x` output?",
            root,
        )
    elements = root.findall("gpu")
    if not elements:
        raise doc.error("the report lists no <gpu> elements", root)
    if len(elements) > MAX_GPUS:
        raise doc.error(f"the report lists {len(elements)} GPUs; at most {MAX_GPUS}", root)
    attached = root.find("attached_gpus")
    if attached is not None:
        count = doc.integer(root, "attached_gpus", "index")
        if count is not None and count != len(elements):
            raise doc.error(
                f"<attached_gpus> says {count}, the report has {len(elements)} <gpu> elements",
                attached,
            )
    gpus = tuple(_gpu(doc, gpu, k) for k, gpu in enumerate(elements))
    try:
        return NodeTopology(
            gpus=gpus,
            driver_version=doc.text(root, "driver_version"),
            cuda_version=doc.text(root, "cuda_version"),
        )
    except TopologyError as exc:
        raise ParseError(str(exc), source=source) from None
