"""The comparison's output: JSON, a Markdown table with ratios and targets, a PNG chart.

A ratio is peer / kvengine of the same figure in the same run (seconds per
operation, or bytes): above 1 kvengine is faster or smaller.
"""

from __future__ import annotations

import json
import os
from typing import Any

import peer_stores

KEY_BYTES = 16 + 2  # the harness's 16-byte keys plus kvengine's 2-byte namespace prefix


def _is_bytes(workload: str) -> bool:
    return workload.startswith(("disk", "peak memory", "kvengine index"))


def build(
    medians: dict[str, dict[str, float]],
    runs: dict[str, dict[str, list[float]]],
    baselines: dict[str, float],
    notes: dict[str, list[str]],
    *,
    config: dict[str, Any],
    machine: dict[str, Any],
    versions: dict[str, str],
    durability: dict[str, str],
    big_bytes: int,
) -> dict[str, Any]:
    ratios: dict[str, dict[str, float]] = {}
    for workload, per in medians.items():
        kv = per.get("kvengine")
        if not kv:
            continue
        ratios[workload] = {s: val / kv for s, val in per.items() if s != "kvengine"}
    report = {
        "machine": machine,
        "versions": versions,
        "durability": durability,
        "config": config,
        "medians": medians,
        "runs": runs,
        "ratios": ratios,
        "baselines": baselines,
        "big_bytes": big_bytes,
        "notes": notes,
    }
    report["targets"] = targets(report)
    return report


def _fastest_peer(ratios: dict[str, float], among: set[str] | None = None) -> tuple[str, float]:
    items = [(r, s) for s, r in ratios.items() if among is None or s in among]
    if not items:
        return "", float("nan")
    r, s = min(items)
    return s, r


def _round_spread(report: dict[str, Any], workload: str, peer: str) -> str:
    """The lowest and highest of the round-by-round ratios (each round runs every
    store once, in turn): how far one round's noise moves the median's ratio."""
    runs = report["runs"].get(workload, {})
    kv, theirs = runs.get("kvengine", []), runs.get(peer, [])
    if len(kv) < 2 or len(kv) != len(theirs):
        return ""
    per_round = [p / k for p, k in zip(theirs, kv, strict=True)]
    return f"{min(per_round):.2f}-{max(per_round):.2f}x"


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the performance issue, with the figure reached and whether it is met."""
    ratios, med, base = report["ratios"], report["medians"], report["baselines"]
    out: list[dict[str, Any]] = []

    def ratio_target(workload: str, need: float, among: set[str] | None = None) -> None:
        if workload not in ratios:
            return
        peer, r = _fastest_peer(ratios[workload], among)
        if peer:
            out.append({"target": f"{workload}: >= {need}x the fastest"
                        f"{' ordered' if among else ''} peer ({peer})",
                        "reached": f"{r:.2f}x", "rounds": _round_spread(report, workload, peer),
                        "met": r >= need})  # fmt: skip

    ratio_target("put 100 B", 2.0)
    ratio_target("overwrite 100 B", 2.0)
    ratio_target("get hit", 1.0)
    ratio_target("get 50% miss", 1.0)
    ratio_target("list 1000 by prefix", 0.5, peer_stores.ORDERED)
    big = report["big_bytes"]
    mib = big // (1 << 20)
    put_big, get_big = med.get(f"put {mib} MiB", {}), med.get(f"get {mib} MiB", {})
    if "kvengine" in put_big and "page-cache write" in base:
        share = base["page-cache write"] / put_big["kvengine"]
        out.append({"target": f"put {mib} MiB: >= 70% of page-cache write bandwidth "
                    f"({big / base['page-cache write'] / 1e6:.0f} MB/s)",
                    "reached": f"{share:.0%}", "met": share >= 0.7})  # fmt: skip
    if "kvengine" in get_big and "memcpy" in base:
        share = base["memcpy"] / get_big["kvengine"]
        out.append({"target": f"get {mib} MiB: >= 50% of memcpy bandwidth "
                    f"({big / base['memcpy'] / 1e6:.0f} MB/s)",
                    "reached": f"{share:.0%}", "met": share >= 0.5})  # fmt: skip
    index = med.get("kvengine index bytes per key", {}).get("kvengine")
    if index is not None:
        over = index - KEY_BYTES
        out.append({"target": "index memory <= 40 B/key + key",
                    "reached": f"{over:.1f} B/key + {KEY_BYTES} key bytes",
                    "met": over <= 40})  # fmt: skip
    for workload in ratios:
        if workload.startswith("open "):
            slower = {s: r for s, r in ratios[workload].items() if r < 1}
            out.append({"target": f"{workload}: faster than every peer",
                        "reached": "faster than all" if not slower else "slower than "
                        + ", ".join(f"{s} ({r:.2f}x)" for s, r in sorted(slower.items())),
                        "met": not slower})  # fmt: skip
    return out


def _fmt(workload: str, value: float, big: int) -> str:
    if _is_bytes(workload):
        if workload.startswith("disk"):
            return f"{value / 1e6:.1f} MB"
        return f"{value:.1f} B"
    if " MiB" in workload:
        return f"{big / value / 1e6:.0f} MB/s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.2f} us"


def markdown(report: dict[str, Any]) -> str:
    med, ratios, big = report["medians"], report["ratios"], report["big_bytes"]
    stores = list(report["versions"])
    m = report["machine"]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}; load average "
        f"{m['load average at start'][0]:.1f} at start, {m['load average at end'][0]:.1f} at end.",
        "",
        "Medians; in brackets each peer's figure divided by kvengine's from the same run "
        "(time per operation or bytes: above 1x kvengine is faster or smaller).",
        "",
        "| workload | " + " | ".join(stores) + " |",
        "|---" * (len(stores) + 1) + "|",
    ]
    for workload, per in med.items():
        cells = []
        for s in stores:
            if s not in per:
                cells.append("n/a")
                continue
            cell = _fmt(workload, per[s], big)
            r = ratios.get(workload, {}).get(s)
            cells.append(cell if r is None else f"{cell} ({r:.2f}x)")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    base = report["baselines"]
    if base:
        lines += ["", "Machine baselines (same run): " + ", ".join(
            f"{k} {big / v / 1e6:.0f} MB/s" for k, v in base.items())]  # fmt: skip
    if report["targets"]:
        lines += ["", "| target | reached | round by round | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            met = "yes" if t["met"] else "NO"
            lines.append(f"| {t['target']} | {t['reached']} | {t.get('rounds', '')} | {met} |")
    notes = [f"- {s}: {n}" for s, ns in report["notes"].items() for n in ns]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: str) -> bool:
    """A bar chart of the ratios (log scale); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ratios = {w: r for w, r in report["ratios"].items() if r and not w.startswith("kvengine")}
    peers = sorted({s for r in ratios.values() for s in r})
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(ratios) * max(1, len(peers)) / 2 + 2))
    height = 0.8 / max(1, len(peers))
    for j, peer in enumerate(peers):
        ys = [i + j * height for i in range(len(ratios))]
        xs = [ratios[w].get(peer, float("nan")) for w in ratios]
        ax.barh(ys, xs, height=height, label=peer)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(ratios))], list(ratios))
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("peer / kvengine (above 1: kvengine faster or smaller)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(report: dict[str, Any], out_dir: str, *, chart_too: bool = True) -> None:
    with open(os.path.join(out_dir, "peer.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "peer.md"), "w") as f:
        f.write(markdown(report))
    if chart_too:
        chart(report, os.path.join(out_dir, "peer.png"))
