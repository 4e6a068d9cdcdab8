"""``nvidia-smi nvlink -s`` (link status) and ``nvidia-smi nvlink -R`` (remote link info).

Both print one block per GPU::

    GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-4039dfe4-...)
             Link 0: 26.562 GB/s                                  (nvlink -s)
             Link 3: <inactive>
             Link 0: Remote Device 00000000:D5:00.0: Link 6       (nvlink -R)

A link with a speed, or with a remote device, is up; ``<inactive>`` is down. A GPU without
NVLinks prints no link lines, and a machine without any prints nothing at all, which reads
as "no NVLinks". Anything else is refused with a line naming the command whose output was
expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from nvtopo.exceptions import ParseError
from nvtopo.model import NvLink

__all__ = [
    "GpuLinks",
    "NvlinkCommand",
    "looks_like_nvlink",
    "merge_links",
    "parse_nvlink",
]

NvlinkCommand = Literal["status", "remote"]
_COMMANDS: dict[str, str] = {
    "status": "`nvidia-smi nvlink -s`",
    "remote": "`nvidia-smi nvlink -R`",
}
_GPU = re.compile(r"^GPU (\d+): (.*?)\s*\(UUID: (GPU-[0-9A-Za-z-]+)\)\s*$")
_LINK = re.compile(r"^\s+Link (\d+): (.*?)\s*$")
_SPEED = re.compile(r"^\d+(\.\d+)? GB/s$")
_REMOTE = re.compile(
    r"^Remote Device ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]): Link (\d+)$"
)
_INACTIVE = {"<inactive>", "inactive"}
#: More links than any GPU has: a number past it is corruption, not a link.
_MAX_LINK = 63


@dataclass(frozen=True)
class GpuLinks:
    """One GPU's NVLinks as a capture lists them."""

    index: int
    uuid: str
    name: str
    links: tuple[NvLink, ...]


def looks_like_nvlink(text: str) -> NvlinkCommand | None:
    """Which ``nvidia-smi nvlink`` output ``text`` is, when it is one."""
    lines = text.splitlines()
    if not any(_GPU.match(line) for line in lines):
        return None
    remote = any(
        m is not None and m.group(2).startswith("Remote Device") for m in map(_LINK.match, lines)
    )
    return "remote" if remote else "status"


def parse_nvlink(
    text: str, command: NvlinkCommand, *, source: str = "<text>"
) -> tuple[GpuLinks, ...]:
    """The GPUs and links of ``nvidia-smi nvlink -s`` (``"status"``) or ``-R`` (``"remote"``).

    Examples
    --------
    >>> text = '''GPU 0: NVIDIA H100 (UUID: GPU-1)
    ...          Link 0: 26.562 GB/s
    ...          Link 1: <inactive>
    ... '''
    >>> [(l.link, l.state) for l in parse_nvlink(text, "status")[0].links]
    [(0, 'up'), (1, 'down')]
    """
    expected = _COMMANDS[command]
    gpus: list[GpuLinks] = []
    links: list[NvLink] = []

    def refuse(message: str, line: int | None) -> ParseError:
        return ParseError(f"not {expected} output: {message}", source=source, line=line)

    def close() -> None:
        if gpus:
            last = gpus[-1]
            gpus[-1] = GpuLinks(last.index, last.uuid, last.name, tuple(links))

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        gpu = _GPU.match(line)
        if gpu is not None:
            close()
            links = []
            index = int(gpu.group(1))
            if any(g.index == index for g in gpus):
                raise refuse(f"GPU {index} is listed twice", number)
            gpus.append(GpuLinks(index, gpu.group(3), gpu.group(2), ()))
            continue
        link = _LINK.match(line)
        if link is None or not gpus:
            raise refuse(f"unexpected line {line.strip()[:60]!r}", number)
        link_id, value = int(link.group(1)), link.group(2)
        if link_id > _MAX_LINK or any(existing.link == link_id for existing in links):
            raise refuse(f"GPU {gpus[-1].index}: link {link_id} is out of place", number)
        if value.lower() in _INACTIVE:
            links.append(NvLink(link_id, state="down"))
            continue
        if command == "status":
            if _SPEED.match(value) is None:
                raise refuse(f"link {link_id}: {value[:40]!r} is not a speed or <inactive>", number)
            links.append(NvLink(link_id, state="up"))
        else:
            remote = _REMOTE.match(value)
            if remote is None:
                raise refuse(
                    f"link {link_id}: {value[:40]!r} is not 'Remote Device <bus id>: Link <n>'",
                    number,
                )
            links.append(NvLink(link_id, state="up", remote_pci_bus_id=remote.group(1).upper()))
    close()
    return tuple(gpus)


def merge_links(status: tuple[NvLink, ...], remote: tuple[NvLink, ...]) -> tuple[NvLink, ...]:
    """One GPU's links from both captures: the state from ``-s``, the remote end from ``-R``."""
    by_link = {link.link: link for link in remote}
    merged = []
    for link in status:
        other = by_link.pop(link.link, None)
        if other is not None and other.remote_pci_bus_id:
            link = NvLink(
                link.link,
                link.state,
                link.version,
                link.remote_type,
                other.remote_pci_bus_id,
                link.remote_gpu,
            )
        merged.append(link)
    merged.extend(by_link.values())
    return tuple(sorted(merged, key=lambda link: link.link))
