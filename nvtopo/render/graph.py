"""Pictures of a node: Graphviz DOT text, and a self-contained SVG with a fixed layout.

The SVG layout puts NVSwitches in a row on top, GPUs in the middle grouped into their NUMA
domains, and NICs at the bottom; direct NVLinks are drawn as arcs labelled ``NV#``.
"""

from __future__ import annotations

from html import escape

from nvtopo.model import NodeTopology

__all__ = ["to_dot", "to_svg"]

_CLOSE_NIC = ("PIX", "PXB")


def _numa_groups(t: NodeTopology) -> list[tuple[str, list[int]]]:
    groups: dict[str, list[int]] = {}
    for g in t.gpus:
        groups.setdefault(g.numa_key, []).append(g.index)
    return list(groups.items())


def _label(key: str) -> str:
    kind, _, value = key.partition(":")
    return {"numa": f"NUMA {value}", "cpus": f"CPUs {value}"}.get(kind, "NUMA unknown")


def _direct_nvlink_pairs(t: NodeTopology) -> list[tuple[int, int, int]]:
    via_switch = bool(t.nvswitches)
    return [
        (p.a, p.b, p.nvlinks)
        for p in t.pairs
        if p.nvlinks > 0 and not (via_switch and p.via_nvswitch)
    ]


def to_dot(t: NodeTopology) -> str:
    """Graphviz DOT text: NUMA domains as clusters, NVSwitches, NICs, NVLink edges."""
    name = escape(t.name or t.system or "node")
    lines = [
        f'graph "{name}" {{',
        f'  graph [rankdir=TB, fontname=Helvetica, labelloc=t, label="{name}"];',
        "  node [fontname=Helvetica, shape=box, style=rounded];",
    ]
    for k, (key, gpus) in enumerate(_numa_groups(t)):
        lines.append(f'  subgraph cluster_numa{k} {{ label="{_label(key)}"; style=dashed;')
        for i in gpus:
            g = t.gpu(i)
            lines.append(
                f'    gpu{i} [label="GPU{i}\\n{escape(g.name or "")}", '
                'style="rounded,filled", fillcolor="#d9f2d9"];'
            )
        lines.append("  }")
    for k, sw in enumerate(t.nvswitches):
        lines.append(
            f'  nvswitch{k} [label="NVSwitch {k}", shape=hexagon, fillcolor="#dde8ff",'
            " style=filled];"
        )
        for gpu, links in sw.gpu_links:
            lines.append(f'  gpu{gpu} -- nvswitch{k} [label="{links}", color="#2a7f2a"];')
    for a, b, n in _direct_nvlink_pairs(t):
        lines.append(
            f'  gpu{a} -- gpu{b} [label="NV{n}", color="#2a7f2a", penwidth={1 + n / 6:.1f}];'
        )
    for nic in t.nics:
        ident = "nic_" + "".join(ch if ch.isalnum() else "_" for ch in nic.name)
        label = nic.name + (f"\\n{nic.device}" if nic.device else "")
        lines.append(
            f'  {ident} [label="{escape(label)}", shape=box, fillcolor="#fff2cc", style=filled];'
        )
        for g, path in zip(t.gpus, nic.gpu_paths, strict=False):
            if path in _CLOSE_NIC:
                lines.append(f'  gpu{g.index} -- {ident} [label="{path}", style=dashed];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(t: NodeTopology) -> str:
    """A standalone SVG picture of the node (no Graphviz needed)."""
    box_w, box_h, gap, pad = 92, 46, 18, 24
    groups = _numa_groups(t)
    n_gpu = len(t.gpus)
    width = max(
        n_gpu * (box_w + gap) + len(groups) * gap + 2 * pad,
        len(t.nics) * (box_w + gap) + 2 * pad,
        len(t.nvswitches) * (box_w + gap) + 2 * pad,
        400,
    )
    top = pad + 24
    sw_y = top
    arc_room = 70 if _direct_nvlink_pairs(t) else 0
    gpu_y = top + (box_h + 70 if t.nvswitches else 0) + arc_room + 20
    nic_y = gpu_y + box_h + 90
    height = (nic_y + box_h + pad) if t.nics else gpu_y + box_h + 50
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{pad}" y="{pad}" font-size="15" font-weight="bold">'
        f"{escape(t.name or t.system or 'node')}: {n_gpu} GPU(s)</text>",
    ]
    centers: dict[int, tuple[float, float]] = {}
    x = pad
    for key, gpus in groups:
        group_x = x
        for i in gpus:
            centers[i] = (x + box_w / 2, gpu_y + box_h / 2)
            x += box_w + gap
        out.append(
            f'<rect x="{group_x - 8}" y="{gpu_y - 22}" width="{x - group_x - gap + 16}" '
            f'height="{box_h + 30}" rx="8" fill="none" stroke="#888" '
            'stroke-dasharray="5,4"/>'
        )
        label = escape(_label(key))
        out.append(f'<text x="{group_x - 4}" y="{gpu_y - 8}" fill="#555">{label}</text>')
        x += gap
    for k, sw in enumerate(t.nvswitches):
        cx = pad + k * (box_w + gap) + box_w / 2
        for gpu, links in sw.gpu_links:
            if gpu in centers:
                gx, gy = centers[gpu]
                out.append(
                    f'<line x1="{cx}" y1="{sw_y + box_h}" x2="{gx}" y2="{gy - box_h / 2}" '
                    f'stroke="#2a7f2a" stroke-opacity="0.35" stroke-width="{1 + links / 9:.1f}"/>'
                )
        out.append(
            f'<rect x="{cx - box_w / 2}" y="{sw_y}" width="{box_w}" height="{box_h}" rx="6" '
            'fill="#dde8ff" stroke="#335"/>'
        )
        out.append(
            f'<text x="{cx}" y="{sw_y + box_h / 2 + 4}" text-anchor="middle">NVSwitch {k}</text>'
        )
    for a, b, n in _direct_nvlink_pairs(t):
        (ax, ay), (bx, _) = centers[a], centers[b]
        lift = 20 + abs(bx - ax) / 8
        top_y = ay - box_h / 2
        out.append(
            f'<path d="M {ax} {top_y} C {ax} {top_y - lift}, {bx} {top_y - lift}, {bx} {top_y}" '
            f'fill="none" stroke="#2a7f2a" stroke-width="{1 + n / 4:.1f}"/>'
        )
        out.append(
            f'<text x="{(ax + bx) / 2}" y="{top_y - lift * 0.75}" text-anchor="middle" '
            f'fill="#2a7f2a" font-size="10">NV{n}</text>'
        )
    for g in t.gpus:
        cx, cy = centers[g.index]
        out.append(
            f'<rect x="{cx - box_w / 2}" y="{cy - box_h / 2}" width="{box_w}" '
            f'height="{box_h}" rx="6" fill="#d9f2d9" stroke="#264"/>'
        )
        out.append(
            f'<text x="{cx}" y="{cy - 3}" text-anchor="middle" font-weight="bold">'
            f"GPU{g.index}</text>"
        )
        short = (g.name or "").replace("NVIDIA ", "")[:14]
        out.append(
            f'<text x="{cx}" y="{cy + 12}" text-anchor="middle" font-size="10">'
            f"{escape(short)}</text>"
        )
    for k, nic in enumerate(t.nics):
        cx = pad + k * (box_w + gap) + box_w / 2
        for g, path in zip(t.gpus, nic.gpu_paths, strict=False):
            if path in _CLOSE_NIC:
                gx, gy = centers[g.index]
                out.append(
                    f'<line x1="{cx}" y1="{nic_y}" x2="{gx}" y2="{gy + box_h / 2}" '
                    'stroke="#b58900" stroke-dasharray="4,3"/>'
                )
        out.append(
            f'<rect x="{cx - box_w / 2}" y="{nic_y}" width="{box_w}" height="{box_h}" rx="6" '
            'fill="#fff2cc" stroke="#860"/>'
        )
        out.append(
            f'<text x="{cx}" y="{nic_y + 20}" text-anchor="middle">{escape(nic.name)}</text>'
        )
        if nic.device:
            out.append(
                f'<text x="{cx}" y="{nic_y + 35}" text-anchor="middle" font-size="10">'
                f"{escape(nic.device)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"
