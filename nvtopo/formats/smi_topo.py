"""Read the matrix that ``nvidia-smi topo -m`` prints.

The parser takes the text as real machines and real pastes show it: tab- or space-separated,
the header underlined with ANSI escapes, NIC columns named ``NIC#`` (with a ``NIC Legend:``
section) or by their device name (``mlx5_0``, older drivers), only a ``CPU Affinity`` column
(older drivers) or ``CPU Affinity``, ``NUMA Affinity`` and ``GPU NUMA ID``, empty or ``N/A``
affinity cells (virtual machines), ``SOC`` for ``SYS`` (older drivers), and any text around
the matrix (a shell prompt, or a capture of several commands).

What it refuses, with a :class:`~nvtopo.exceptions.ParseError` naming the line: a text with no
header row, rows missing or cut short, cells that are no path class, an asymmetric matrix,
affinity cells that are no CPU or NUMA list.

Examples
--------
>>> text = '''
... \\tGPU0\\tGPU1\\tCPU Affinity\\tNUMA Affinity\\tGPU NUMA ID
... GPU0\\t X \\tNV4\\t0-31\\t0\\t\\tN/A
... GPU1\\tNV4\\t X \\t0-31\\t0\\t\\tN/A
... '''
>>> t = parse_topo_matrix(text)
>>> t.path_class(0, 1), t.gpu(1).cpu_affinity, t.gpu(1).numa_node
('NV4', '0-31', 0)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from itertools import combinations

from nvtopo.exceptions import NvtopoWarning, ParseError, TopologyError
from nvtopo.formats._cpulist import cpulist_problem, expand_cpulist, is_cpulist
from nvtopo.model import Gpu, GpuPair, Nic, NodeTopology, PcieClass, parse_path_class
from nvtopo.model.limits import LIMITS, MAX_GPUS, MAX_INPUT_BYTES, MAX_NICS

__all__ = ["AFFINITY_COLUMNS", "parse_topo_matrix"]

#: The affinity columns ``nvidia-smi topo -m`` prints after the device columns, in order.
AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
_AFFINITY_WORDS = {tuple(name.split()): name for name in AFFINITY_COLUMNS}
_AFFINITY_FIRST_WORDS = {"CPU", "NUMA", "GPU"}

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL = r"X|NV\d+|PIX|PXB|PHB|NODE|SYS|SOC"
_CELL_RE = re.compile(rf"^(?:{_CELL})$")
# A paste that lost its tabs runs cells or device names together ("NODENODE", "GPU0GPU1");
# such a token is split where every piece is itself a cell or a device name.
_GLUED_CELLS_RE = re.compile(rf"^(?:{_CELL}){{2,}}$")
_CELL_PART_RE = re.compile(_CELL)
_DEVICE = r"GPU\d+|NIC\d+|mlx\d+_\d+"
_GLUED_DEVICES_RE = re.compile(rf"^(?:{_DEVICE}){{2,}}$")
_DEVICE_PART_RE = re.compile(_DEVICE)
_GPU_RE = re.compile(r"^GPU(\d+)$")
_NIC_NUMBERED_RE = re.compile(r"^NIC\d+$")
# Device columns: GPU#, NIC#, or an RDMA device name (mlx5_0, mlx5_bond_0, irdma0); all end
# in a digit, which keeps ordinary words of surrounding text from reading as a header.
_DEVICE_NAME_RE = re.compile(r"^[A-Za-z][\w.-]*\d$")
_ROW_LIKE_RE = re.compile(r"^(?:GPU|NIC)\d+$")
_LEGEND_ENTRY_RE = re.compile(r"^\s*(\S+):\s*(\S.*?)\s*$")
_NOT_AVAILABLE = {"", "N/A"}


@dataclass(frozen=True)
class _Token:
    text: str
    col: int  # column where the token starts, tabs expanded to 8 as a terminal shows them


@dataclass(frozen=True)
class _Header:
    line: int
    devices: tuple[str, ...]
    affinity: tuple[_Token, ...]  # one token per affinity column: its name and column


@dataclass(frozen=True)
class _Row:
    line: int
    label: str
    cells: tuple[str, ...]
    extra: tuple[_Token, ...]


def _tokens(line: str) -> list[_Token]:
    plain = _ANSI_RE.sub("", line).expandtabs(8)
    return [_Token(m.group(), m.start()) for m in re.finditer(r"\S+", plain)]


def _split_glued(tok: _Token, glued: re.Pattern[str], part: re.Pattern[str]) -> list[_Token]:
    if not glued.match(tok.text):
        return [tok]
    return [_Token(m.group(), tok.col + m.start()) for m in part.finditer(tok.text)]


def _is_cell(text: str) -> bool:
    return bool(_CELL_RE.match(text) or _GLUED_CELLS_RE.match(text))


def _read_header(raw: list[_Token], line: int, source: str) -> _Header | None:
    """The header in ``raw``, or None when the line is no header row."""
    toks = [t for tok in raw for t in _split_glued(tok, _GLUED_DEVICES_RE, _DEVICE_PART_RE)]
    if not toks or not _GPU_RE.match(toks[0].text):
        return None
    if len(toks) > 1 and _is_cell(toks[1].text):
        return None  # a matrix row ("GPU0  X  NV12 ..."), not the header
    devices: list[str] = []
    i = 0
    while i < len(toks) and toks[i].text not in _AFFINITY_FIRST_WORDS:
        if not _DEVICE_NAME_RE.match(toks[i].text):
            return None
        devices.append(toks[i].text)
        i += 1
    affinity: list[_Token] = []
    while i < len(toks):
        for words, name in _AFFINITY_WORDS.items():
            if tuple(t.text for t in toks[i : i + len(words)]) == words:
                affinity.append(_Token(name, toks[i].col))
                i += len(words)
                break
        else:
            raise ParseError(
                f"header column {toks[i].text!r} is neither a device nor one of "
                f"{', '.join(AFFINITY_COLUMNS)}",
                source=source,
                line=line,
            )
    return _Header(line, tuple(devices), tuple(affinity))


# A line that starts like a matrix row ("GPU3   NV18 ...") or a NIC row is no header; seen
# without tokenizing it, so that finding the header costs little even in a huge capture.
_ROW_START_RE = re.compile(rf"^\s*(?:\x1b\[[0-9;]*m)*\S+\s+(?:{_CELL})(?:\s|$)")


def _find_header(lines: list[str], source: str) -> _Header:
    found: list[_Header] = []
    for number, text in enumerate(lines, start=1):
        if "GPU" not in text[:40] or _ROW_START_RE.match(text):
            continue
        header = _read_header(_tokens(text), number, source)
        if header is not None:
            found.append(header)
    if not found:
        raise ParseError(
            "no `GPU0 ...` header row: is this `nvidia-smi topo -m` output?", source=source
        )
    # A capture of several commands also holds `topo -p2p` matrices, whose header is GPUs
    # only; the `topo -m` header is the one with affinity columns.
    return next((h for h in found if h.affinity), found[0])


def _read_row(toks: list[_Token], header: _Header, line: int, source: str) -> _Row:
    label, n = toks[0].text, len(header.devices)
    cells: list[str] = []
    rest = toks[1:]
    while rest and len(cells) < n:
        tok = rest[0]
        if not _is_cell(tok.text):
            if is_cpulist(tok.text) or tok.text in _NOT_AVAILABLE:
                break  # the affinity columns start early: the row is short of cells
            column = header.devices[len(cells)]
            raise ParseError(
                f"unknown cell {tok.text!r} in row {label}, column {column} "
                "(expected X, NV#, PIX, PXB, PHB, NODE, SYS or SOC)",
                source=source,
                line=line,
            )
        pieces = [p.text for p in _split_glued(tok, _GLUED_CELLS_RE, _CELL_PART_RE)]
        for j, piece in enumerate(pieces):
            if piece.startswith("NV"):
                try:
                    parse_path_class(piece)
                except TopologyError as exc:
                    column = header.devices[min(len(cells) + j, n - 1)]
                    raise ParseError(
                        f"row {label}, column {column}: {exc}", source=source, line=line
                    ) from None
        cells.extend(pieces)
        rest = rest[1:]
    if len(cells) != n:
        raise ParseError(
            f"row {label} has {len(cells)} cells, the header has {n} device columns "
            f"({header.devices[0]}..{header.devices[-1]})",
            source=source,
            line=line,
        )
    return _Row(line, label, tuple(cells), tuple(rest))


def _read_rows(lines: list[str], header: _Header, source: str) -> tuple[dict[str, _Row], int]:
    """Rows under ``header``, by label, and the last line number of the matrix block."""
    rows: dict[str, _Row] = {}
    labels = set(header.devices)
    last = header.line
    for number in range(header.line + 1, len(lines) + 1):
        toks = _tokens(lines[number - 1])
        if not toks:
            _check_not_interrupted(lines, number, labels - set(rows), source)
            break
        label = toks[0].text
        if label not in labels:
            if _ROW_LIKE_RE.match(label) and len(toks) > 1 and _is_cell(toks[1].text):
                raise ParseError(
                    f"row {label} is not a column of the header (line {header.line})",
                    source=source,
                    line=number,
                )
            _check_not_interrupted(lines, number, labels - set(rows), source)
            break
        if label in rows:
            raise ParseError(
                f"row {label} appears twice (lines {rows[label].line} and {number})",
                source=source,
                line=number,
            )
        try:
            rows[label] = _read_row(toks, header, number, source)
        except ParseError:
            if _GPU_RE.match(label) or any(text.strip() for text in lines[number:]):
                raise
            break  # the capture ends inside a NIC row: that row is cut, like those after it
        last = number
    return rows, last


def _check_not_interrupted(lines: list[str], stop: int, pending: set[str], source: str) -> None:
    """Refuse a stray line inside the matrix: one after which rows still due follow.

    Without this, text pasted into the middle of a capture reads as a capture cut short,
    and the error would name the rows that are in fact there.
    """
    for number in range(stop + 1, len(lines) + 1):
        toks = _tokens(lines[number - 1])
        if len(toks) > 1 and toks[0].text in pending and _is_cell(toks[1].text):
            text = lines[stop - 1].strip()
            what = f"{text[:40]!r}" if text else "an empty line"
            raise ParseError(
                f"{what} interrupts the matrix: row {toks[0].text} follows on line {number}",
                source=source,
                line=stop,
            )


def _describe_missing(names: list[str], missing: list[str]) -> str:
    at = [names.index(m) for m in missing]
    if len(missing) >= 3 and at == list(range(at[0], at[0] + len(at))):
        return f"{missing[0]}..{missing[-1]}"
    return ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")


def _check_rows(header: _Header, gpus: list[str], rows: dict[str, _Row], source: str) -> None:
    """Refuse a capture cut inside the GPU block; warn about one cut inside the NIC rows.

    The GPU rows carry every GPU-to-NIC path, so a capture whose NIC rows are cut still
    gives the whole GPU block and each NIC's place; only NIC-to-NIC paths of the missing
    rows are lost (printed ``?``).
    """
    nics = [d for d in header.devices if d not in gpus]
    last = max([r.line for r in rows.values()], default=header.line)
    for kind, names in (("GPU", gpus), ("NIC", nics)):
        missing = [d for d in names if d not in rows]
        if missing:
            plural = "s" if len(names) != 1 else ""
            what = (
                f"header names {len(names)} {kind}{plural}, only {len(names) - len(missing)} "
                f"{kind} rows follow ({_describe_missing(names, missing)} missing)"
            )
            if kind == "GPU":
                raise ParseError(what, source=source, line=last)
            warnings.warn(
                f"{source}:{last}: {what}; their NIC-to-NIC paths are unknown",
                NvtopoWarning,
                stacklevel=4,
            )


def _check_size(header: _Header, source: str) -> None:
    """Refuse an impossible matrix at its header, before work that grows with its square."""
    gpus = sum(1 for d in header.devices if _GPU_RE.match(d))
    for what, count, most in (
        ("GPU", gpus, MAX_GPUS),
        ("NIC", len(header.devices) - gpus, MAX_NICS),
    ):
        if count > most:
            raise ParseError(
                f"header names {count} {what}s; a node has at most {most}",
                source=source,
                line=header.line,
            )


def _gpu_columns(header: _Header, source: str) -> list[str]:
    seen: set[str] = set()
    for name in header.devices:
        if name in seen:
            raise ParseError(f"header names {name} twice", source=source, line=header.line)
        seen.add(name)
    gpus: list[str] = []
    for k, name in enumerate(header.devices):
        if _GPU_RE.match(name):
            if k != len(gpus):
                raise ParseError(
                    f"GPU column {name} comes after the NIC column {header.devices[k - 1]}",
                    source=source,
                    line=header.line,
                )
            gpus.append(name)
    indices = [int(g[3:]) for g in gpus]
    highest = LIMITS["index"].maximum
    if any(i > highest for i in indices):
        raise ParseError(
            f"GPU column GPU{max(indices)}: GPU indices go up to {highest}",
            source=source,
            line=header.line,
        )
    if indices != sorted(set(indices)):
        raise ParseError(
            f"GPU columns must be unique and ascending, got {' '.join(gpus)}",
            source=source,
            line=header.line,
        )
    return gpus


def _check_matrix(header: _Header, gpus: list[str], rows: dict[str, _Row], source: str) -> None:
    devices = header.devices
    for i, a in enumerate(devices):
        row = rows.get(a)
        if row is None:
            continue  # a NIC row cut from the capture (warned about)
        for j, b in enumerate(devices):
            cell = row.cells[j]
            if (cell == "X") != (i == j):
                what = "X off the diagonal" if cell == "X" else f"{cell!r} on the diagonal"
                raise ParseError(f"row {a}, column {b}: {what}", source=source, line=row.line)
            if (a not in gpus or b not in gpus) and cell.startswith("NV"):
                raise ParseError(
                    f"row {a}, column {b}: {cell} between a NIC and another device "
                    "(NICs have PCIe paths only)",
                    source=source,
                    line=row.line,
                )
            if j < i and b in rows and _same(cell) != _same(rows[b].cells[i]):
                raise ParseError(
                    f"matrix is not symmetric: row {a}, column {b} says {cell}, "
                    f"row {b}, column {a} (line {rows[b].line}) says {rows[b].cells[i]}",
                    source=source,
                    line=row.line,
                )


def _same(cell: str) -> str:
    return "SYS" if cell == "SOC" else cell


def _assign_affinity(row: _Row, header: _Header, source: str) -> dict[str, str]:
    """Each affinity column's cell of a GPU row; a column left empty is missing from the dict."""
    toks, columns = list(row.extra), list(header.affinity)
    if any(_is_cell(t.text) for t in toks):
        raise ParseError(
            f"row {row.label} has more cells than the {len(header.devices)} device columns "
            "(ragged row)",
            source=source,
            line=row.line,
        )
    if len(toks) > len(columns):
        raise ParseError(
            f"row {row.label} has {len(toks)} cells after the device columns, the header has "
            f"{len(columns)} affinity column{'s' if len(columns) != 1 else ''} (ragged row)",
            source=source,
            line=row.line,
        )
    if len(toks) == len(columns):
        chosen: tuple[int, ...] = tuple(range(len(columns)))
    else:
        # Empty cells (virtual machines) leave fewer tokens than columns; each token goes to
        # the column it stands under, tabs expanded as a terminal aligns them.
        def distance(combo: tuple[int, ...]) -> int:
            return sum(abs(t.col - columns[c].col) for t, c in zip(toks, combo, strict=True))

        chosen = min(combinations(range(len(columns)), len(toks)), key=distance)
    return {columns[c].text: t.text for t, c in zip(toks, chosen, strict=True)}


def _read_gpu(row: _Row, header: _Header, source: str) -> Gpu:
    cells = _assign_affinity(row, header, source)
    cpu = cells.get("CPU Affinity", "")
    if cpu in _NOT_AVAILABLE:
        cpu_affinity = None
    elif cpulist_problem(cpu, LIMITS["cpu"].maximum) is None:
        cpu_affinity = cpu
    else:
        raise ParseError(
            f"CPU Affinity of {row.label} is {cpu!r}, not a CPU list like 0-55,112-167 "
            f"(CPU ids up to {LIMITS['cpu'].maximum})",
            source=source,
            line=row.line,
        )
    numa = cells.get("NUMA Affinity", "")
    numa_affinity: tuple[int, ...] = ()
    if numa not in _NOT_AVAILABLE:
        try:
            numa_affinity = expand_cpulist(numa)
        except ValueError as exc:
            raise ParseError(
                f"NUMA Affinity of {row.label}: {exc}", source=source, line=row.line
            ) from None
    gpu_numa = cells.get("GPU NUMA ID", "")
    highest = LIMITS["gpuNumaId"].maximum
    if gpu_numa not in _NOT_AVAILABLE and not (gpu_numa.isdigit() and int(gpu_numa) <= highest):
        raise ParseError(
            f"GPU NUMA ID of {row.label} is {gpu_numa!r}, not a number up to {highest} or N/A",
            source=source,
            line=row.line,
        )
    return Gpu(
        index=int(row.label[3:]),
        cpu_affinity=cpu_affinity,
        numa_affinity=numa_affinity,
        numa_node=numa_affinity[0] if len(numa_affinity) == 1 else None,
        gpu_numa_id=None if gpu_numa in _NOT_AVAILABLE else int(gpu_numa),
    )


def _nic_cell(cell: str) -> str:
    """A NIC-to-NIC cell as the model keeps it (``X`` on the diagonal, ``SOC`` as ``SYS``)."""
    return "X" if cell == "X" else _same(cell)


def _read_legend(lines: list[str], start: int, nics: list[str], source: str) -> dict[str, str]:
    """``NIC Legend:`` entries after line ``start`` (``{"NIC0": "mlx5_0"}``); absent is empty."""
    legend: dict[str, str] = {}
    number = start
    while number < len(lines):
        number += 1
        text = lines[number - 1]
        if _read_header(_tokens(text), number, source) is not None:
            return legend  # the next matrix of a multi-command capture
        if text.strip() == "NIC Legend:":
            break
    else:
        return legend
    while number < len(lines):
        number += 1
        text = lines[number - 1]
        match = _LEGEND_ENTRY_RE.match(_ANSI_RE.sub("", text))
        if not match:
            if text.strip() or legend:
                break
            continue
        name, device = match.groups()
        if name not in nics and not _NIC_NUMBERED_RE.match(name):
            break  # the next command's output ("ulimit soft: ...")
        if name not in nics:
            raise ParseError(
                f"NIC Legend names {name}, which is no NIC column of the matrix",
                source=source,
                line=number,
            )
        if name in legend:
            raise ParseError(f"NIC Legend names {name} twice", source=source, line=number)
        legend[name] = device
    return legend


def parse_topo_matrix(text: str, *, source: str = "<text>") -> NodeTopology:
    """Parse the output of ``nvidia-smi topo -m`` into a :class:`NodeTopology`.

    Parameters
    ----------
    text
        The command's output, possibly with text around it (a prompt, other commands).
    source
        Where the text came from, for error messages (a file name).

    Returns
    -------
    NodeTopology
        One :class:`~nvtopo.model.Gpu` per GPU row (index, CPU affinity, NUMA affinity and
        the NUMA node when that affinity is a single node), a :class:`~nvtopo.model.GpuPair`
        per GPU pair (``nvlinks`` for ``NV#`` cells, ``pcie`` for PCIe classes) and one
        :class:`~nvtopo.model.Nic` per NIC column with its path class to each GPU.

    Raises
    ------
    ParseError
        The text holds no matrix, or the matrix is cut, ragged, asymmetric or has cells
        that are not path classes or affinity lists; the message names the line.
    """
    if len(text) > MAX_INPUT_BYTES:
        raise ParseError(f"{len(text)} characters; at most {MAX_INPUT_BYTES}", source=source)
    lines = [line.rstrip("\r") for line in text.split("\n")]
    header = _find_header(lines, source)
    _check_size(header, source)
    gpus = _gpu_columns(header, source)
    rows, last = _read_rows(lines, header, source)
    _check_rows(header, gpus, rows, source)
    _check_matrix(header, gpus, rows, source)
    for label in header.devices:
        if label not in gpus and label in rows and rows[label].extra:
            row = rows[label]
            raise ParseError(
                f"NIC row {label} has {len(row.extra)} cells after the device columns "
                f"(NIC rows carry no affinity)",
                source=source,
                line=row.line,
            )
    nic_names = [d for d in header.devices if d not in gpus]
    legend = _read_legend(lines, last, nic_names, source)
    position = {name: k for k, name in enumerate(header.devices)}

    pairs: list[GpuPair] = []
    for i, a in enumerate(gpus):
        for b in gpus[i + 1 :]:
            pcie, nvlinks = parse_path_class(rows[a].cells[position[b]])
            pair = GpuPair(int(a[3:]), int(b[3:]), nvlinks=nvlinks, pcie=pcie)
            pairs.append(pair)
    nics: list[Nic] = []
    for name in nic_names:
        paths: list[PcieClass] = []
        for g in gpus:
            # The GPU rows hold every GPU-to-NIC path, also for a NIC whose own row is cut.
            pcie, _ = parse_path_class(rows[g].cells[position[name]])
            assert pcie is not None  # _check_matrix refused NV cells between GPU and NIC
            paths.append(pcie)
        nic_row = rows.get(name)
        nic_paths = (
            ()
            if nic_row is None
            else tuple(_nic_cell(nic_row.cells[position[n]]) for n in nic_names)
        )
        default = None if _NIC_NUMBERED_RE.match(name) else name
        nics.append(
            Nic(
                name=name,
                device=legend.get(name, default),
                gpu_paths=tuple(paths),
                nic_paths=nic_paths,
            )
        )
    return NodeTopology(
        gpus=tuple(_read_gpu(rows[g], header, source) for g in gpus),
        pairs=tuple(pairs),
        nics=tuple(nics),
    )
