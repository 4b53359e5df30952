#!/usr/bin/env python3
"""Draws the figures of benches/README.md from `vipgate bench --json` results, as SVG.

    python3 benches/plot.py benches/results benches/img

Reads flows.json, vips.json, backends.json (sweeps) and gateway.json, syn.json (single
runs) from the results folder; writes one SVG per figure. No third-party packages: the
SVG is written by hand.
"""

import json
import math
import os
import sys

W, H = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 60, 40, 55


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["runs"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(title, body):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="12">\n'
        f'<rect width="{W}" height="{H}" fill="white"/>\n'
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>\n'
        + body
        + "</svg>\n"
    )


def line_chart(title, xlabel, ylabel, xs, series, log_x=True):
    """series: list of (name, colour, ys)."""
    ymax = max(max(ys) for _, _, ys in series) * 1.15 or 1
    px = lambda i: LEFT + (W - LEFT - RIGHT) * (i / max(len(xs) - 1, 1))
    py = lambda y: H - BOTTOM - (H - TOP - BOTTOM) * (y / ymax)
    out = []
    # Axes and grid.
    out.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>')
    for k in range(6):
        y = ymax * k / 5
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{W - RIGHT}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{px(i):.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">{esc(x)}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(
        f'<text x="16" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(TOP + H - BOTTOM) / 2})">{esc(ylabel)}</text>'
    )
    for n, (name, colour, ys) in enumerate(series):
        pts = " ".join(f"{px(i):.1f},{py(y):.1f}" for i, y in enumerate(ys))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, y in enumerate(ys):
            out.append(f'<circle cx="{px(i):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
            out.append(f'<text x="{px(i) + 5:.1f}" y="{py(y) - 6:.1f}" fill="{colour}">{y:.1f}</text>')
        out.append(f'<rect x="{LEFT + 12}" y="{TOP + 4 + 18 * n}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{LEFT + 30}" y="{TOP + 14 + 18 * n}">{esc(name)}</text>')
    return svg(title, "\n".join(out) + "\n")


def bars(title, ylabel, groups, names, colours):
    """groups: list of (label, [values per name]); log scale on y."""
    vmax = max(v for _, vs in groups for v in vs)
    top = math.log10(vmax) * 1.1
    py = lambda v: H - BOTTOM - (H - TOP - BOTTOM) * (math.log10(max(v, 1)) / top)
    gw = (W - LEFT - RIGHT) / len(groups)
    bw = gw * 0.8 / len(names)
    out = [f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>']
    for e in range(0, int(top) + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e}</text>')
    for g, (label, vs) in enumerate(groups):
        x0 = LEFT + gw * g + gw * 0.1
        for k, v in enumerate(vs):
            x = x0 + bw * k
            out.append(
                f'<rect x="{x:.1f}" y="{py(v):.1f}" width="{bw - 2:.1f}" height="{H - BOTTOM - py(v):.1f}" fill="{colours[k]}"/>'
            )
            out.append(f'<text x="{x + bw / 2:.1f}" y="{py(v) - 4:.1f}" text-anchor="middle" font-size="10">{v}</text>')
        out.append(f'<text x="{x0 + gw * 0.4:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">{esc(label)}</text>')
    for k, name in enumerate(names):
        out.append(f'<rect x="{LEFT + 10 + 110 * k}" y="{TOP}" width="12" height="12" fill="{colours[k]}"/>')
        out.append(f'<text x="{LEFT + 28 + 110 * k}" y="{TOP + 10}">{esc(name)}</text>')
    out.append(
        f'<text x="16" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(TOP + H - BOTTOM) / 2})">{esc(ylabel)}</text>'
    )
    return svg(title, "\n".join(out) + "\n")


def human(n):
    for unit, div in (("M", 1_000_000), ("k", 1000)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return str(n)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    written = []
    for name, key, xlabel in (
        ("flows", "flows", "live flows"),
        ("vips", "vips", "VIPs"),
        ("backends", "backends", "backends per VIP"),
    ):
        runs = load(src, f"{name}.json")
        if not runs:
            continue
        xs = [human(r[key]) for r in runs]
        ns = [r["workers"][0]["ns_per_packet"] for r in runs]
        mpps = [r["workers"][0]["mpps"] for r in runs]
        path = os.path.join(dst, f"{name}.svg")
        with open(path, "w") as f:
            f.write(
                line_chart(
                    f"64-byte packets, one worker: cost against {xlabel}",
                    xlabel,
                    "ns per packet / Mpps",
                    xs,
                    [("ns per packet", "#c0392b", ns), ("Mpps", "#2471a3", mpps)],
                )
            )
        written.append(path)
    groups = []
    for name in ("flows", "gateway", "syn"):
        runs = load(src, f"{name}.json")
        if not runs:
            continue
        r = next((r for r in runs if r["flows"] == 1_000_000), runs[0])
        lat = r["workers"][0]["latency_ns"]
        label = {"flows": "64b, 1M flows", "gateway": "2G gateway mix", "syn": "new flows (syn)"}[name]
        groups.append((label, [lat["p50"], lat["p99"], lat["p99.9"]]))
    if groups:
        path = os.path.join(dst, "latency.svg")
        with open(path, "w") as f:
            f.write(
                bars(
                    "A packet's time in the engine (its burst of 32), ns",
                    "ns (log scale)",
                    groups,
                    ["p50", "p99", "p99.9"],
                    ["#27ae60", "#e67e22", "#c0392b"],
                )
            )
        written.append(path)
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
