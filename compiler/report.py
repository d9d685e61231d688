"""The compile report: per layer and per pass, from the compiler's analytical estimate.

Useful work counts the network's operations (``compiler/analysis.py``): 2 per useful MAC plus one
per activation, pooling window element or elementwise result; padding, zero-padded kernel blocks
and skipped zero kernels do not count. Utilisation is useful MACs over (cycles x MAC units).
"""

from __future__ import annotations

import json
from collections import defaultdict

from nfc.arch import ArchConfig
from nfc.compiler.analysis import layer_stats, totals
from nfc.compiler.driver import CompileResult
from nfc.compiler.grid import ConvLayer, HostLayer, MapLayer
from nfc.compiler.lower import mapper_error
from nfc.compiler.program import HostStep, Pass
from nfc.text import si

__all__ = ["build_report", "format_report", "report_json"]


def report_json(rep: dict, **kw) -> str:
    """``rep`` as indented JSON, except that each per-pass row is one compact line: Python's JSON
    encoder is slow with ``indent`` and a report can have tens of thousands of rows."""
    rows = rep.get("passes")
    if not rows:
        return json.dumps(rep, indent=2, sort_keys=True, **kw)
    marker = "\u0000passes\u0000"
    text = json.dumps({**rep, "passes": marker}, indent=2, sort_keys=True, **kw)
    body = ",\n    ".join(json.dumps(r, sort_keys=True, **kw) for r in rows)
    return text.replace(json.dumps(marker), "[\n    " + body + "\n  ]", 1)


def _pass_row(p: Pass, arch: ArchConfig) -> dict:
    reads = sum(s.words for s in p.streams if s.direction == "read")
    writes = sum(s.words for s in p.streams if s.direction == "write")
    cycles = p.estimate["total"]
    return {
        "index": p.index,
        "kind": p.kind,
        "layers": list(p.layers),
        "convolvers": len(p.convs),
        "mappers": len(p.maps),
        "alus": len(p.alus),
        **({"pooling_units": len(p.pools)} if p.pools else {}),
        "read_streams": sum(1 for s in p.streams if s.direction == "read"),
        "write_streams": sum(1 for s in p.streams if s.direction == "write"),
        "links": len(p.links),
        "dram_bytes_read": reads * arch.word_bytes,
        "dram_bytes_written": writes * arch.word_bytes,
        "config_words": len(p.config_words),
        "rate": f"{p.rate[0]}/{p.rate[1]}",
        "beats": p.beats,
        "macs": p.macs,
        "cycles": dict(p.estimate),
        "utilisation": p.macs / (cycles * arch.macs) if cycles else 0.0,
    }


def build_report(
    result: CompileResult,
    arch: ArchConfig,
    saturations: dict[str, int] | None = None,
    pass_rows: bool = True,
) -> dict:
    """Everything the report shows, as plain data (``--json`` prints it).

    ``saturations``: per layer, the saturation events of the fixed-point executor on the
    calibration samples (when compiled with them). ``pass_rows=False`` leaves out the per-pass
    rows (``passes`` is then empty and ``passes_listed`` false), for programs of very many passes."""
    prog = result.program
    stats = {s.name: s for s in layer_stats(result.graph)}
    net = totals(list(stats.values()))
    passes = [s for s in prog.steps if isinstance(s, Pass)]
    hosts = [s for s in prog.steps if isinstance(s, HostStep)]
    by_layer: dict[str, list[Pass]] = defaultdict(list)
    for p in passes:
        by_layer[p.layers[0]].append(p)
    layers = []
    for layer in result.lowered.layers:
        ps = by_layer.get(layer.name, [])
        cycles = sum(p.estimate["total"] for p in ps)
        macs = sum(p.macs for p in ps)
        fused = sorted({name for p in ps for name in p.layers[1:]})
        row = {
            "name": layer.name,
            "type": layer.kind
            if isinstance(layer, ConvLayer)
            else type(layer).__name__.replace("Layer", "").lower(),
            "where": "host" if isinstance(layer, HostLayer) else "grid",
            "source": layer.source,
            "passes": len(ps),
            "fused": fused,
            "cycles": cycles,
            "macs": macs,
            "dram_bytes": sum(s.words for p in ps for s in p.streams) * arch.word_bytes,
            "config_words": sum(len(p.config_words) for p in ps),
            "utilisation": macs / (cycles * arch.macs) if cycles else 0.0,
        }
        pwls = layer.act if isinstance(layer, ConvLayer) else layer.pwl if isinstance(layer, MapLayer) else ()
        if pwls:
            row["mapper_max_error"] = max(mapper_error(p) for p in set(pwls))
        if isinstance(layer, ConvLayer):
            row["act"] = layer.act_kind
            row["terms"] = layer.terms
            row["formats"] = {"in": str(layer.in_fmt), "weights": str(layer.wfmt), "out": str(layer.out_fmt)}
        if isinstance(layer, HostLayer):
            row["why"] = layer.why
        if not ps and not isinstance(layer, HostLayer) and any(layer.name in p.layers for p in passes):
            row["fused_into_previous"] = True
        layers.append(row)
    cycles = sum(p.estimate["total"] for p in passes)
    macs = sum(p.macs for p in passes)
    seconds = cycles / arch.clock_hz if cycles else 0.0
    grid_ops = net["grid_ops"]
    config_cycles = sum(p.estimate["config"] for p in passes)
    hidden_cycles = sum(p.estimate.get("hidden", 0) for p in passes)
    return {
        "model": prog.model,
        "target": arch.name,
        "policy": prog.policy,
        "estimate": "analytical (compiler)",
        "calibrated": result.formats.calibrated,
        "layers": layers,
        "passes": [_pass_row(p, arch) for p in passes] if pass_rows else [],
        "passes_listed": pass_rows,
        "host_steps": [{"index": h.index, "layer": h.layer, "op": h.op, "ops": h.ops} for h in hosts],
        "totals": {
            "passes": len(passes),
            "host_steps": len(hosts),
            "cycles": cycles,
            "config_cycles": config_cycles,
            "hidden_config_cycles": hidden_cycles,
            "latency_ms": seconds * 1e3,
            "frames_per_s": 1.0 / seconds if seconds else 0.0,
            "macs": macs,
            "network_macs": net["macs"],
            "useful_gops": grid_ops / seconds / 1e9 if seconds else 0.0,
            "peak_gops": arch.peak_gops,
            "mac_utilisation": macs / (cycles * arch.macs) if cycles else 0.0,
            "dram_bytes": sum(s.words for p in passes for s in p.streams) * arch.word_bytes,
            "config_words": sum(len(p.config_words) for p in passes),
            "memory_bytes": prog.memory_words * arch.word_bytes,
            "host_ops": net["host_ops"],
            "host_op_share": net["host_op_share"],
            "host_layers": net["host_layers"],
            "mapper_max_error": max((lr.get("mapper_max_error", 0.0) for lr in layers), default=0.0),
            "saturations": None if saturations is None else sum(saturations.values()),
        },
        "saturations": saturations,
    }


def format_report(rep: dict, max_passes: int = 0) -> str:
    """The report as text: per-layer table, optionally the first ``max_passes`` passes, totals."""
    out = [f"{rep['model']} on {rep['target']} ({rep['policy']} policy, {rep['estimate']} estimate)"]
    head = ["layer", "type", "where", "passes", "cycles", "MACs", "util", "DRAM B", "act/notes"]
    rows = []
    for lr in rep["layers"]:
        if lr.get("fused_into_previous"):
            continue
        note = lr.get("act", "") or ""
        if lr["fused"]:
            note = (note + " " if note else "") + "+ fused " + ", ".join(lr["fused"])
        if "mapper_max_error" in lr:
            note += f" (mapper err {lr['mapper_max_error']:.3g})"
        if lr["where"] == "host":
            note = lr.get("why", "")
        rows.append(
            [
                lr["name"],
                lr["type"],
                lr["where"],
                str(lr["passes"]),
                si(lr["cycles"]),
                si(lr["macs"]),
                f"{100 * lr['utilisation']:.1f}%",
                si(lr["dram_bytes"]),
                note,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if max_passes:
        out.append("")
        out.append("pass  kind     layers                          conv map alu  r/w  rate   cycles  util")
        for p in rep["passes"][:max_passes]:
            out.append(
                f"{p['index']:4d}  {p['kind']:7s}  {', '.join(p['layers'])[:30]:30s}  {p['convolvers']:4d} {p['mappers']:3d} "
                f"{p['alus']:3d}  {p['read_streams']}/{p['write_streams']}  {p['rate']:5s} {p['cycles']['total']:8d}  "
                f"{100 * p['utilisation']:.1f}%"
            )
        if not rep.get("passes_listed", True):
            out.append("(per-pass rows left out of this report: too many passes; --listings full keeps them)")
        elif len(rep["passes"]) > max_passes:
            out.append(f"... {len(rep['passes']) - max_passes} more passes (--json has them all)")
    t = rep["totals"]
    out.append("")
    out.append(
        f"total: {t['passes']} passes, {t['host_steps']} host steps, {si(t['cycles'])} cycles "
        f"({si(t['config_cycles'])} configuring, {si(t['hidden_config_cycles'])} more behind streaming), "
        f"{t['latency_ms']:.3f} ms per frame, "
        f"{t['frames_per_s']:.2f} frames/s"
    )
    out.append(
        f"       {t['useful_gops']:.2f} useful GOPS of {t['peak_gops']:.1f} peak, MAC utilisation "
        f"{100 * t['mac_utilisation']:.1f}%, DRAM {si(t['dram_bytes'])}B per frame, memory {si(t['memory_bytes'])}B"
    )
    host = ", ".join(t["host_layers"]) or "none"
    out.append(f"       host ops: {host} ({100 * t['host_op_share']:.3f}% of the network's ops)")
    out.append(f"       mapper worst-case error {t['mapper_max_error']:.4g} (measured over every input word)")
    if t["saturations"] is not None:
        worst = sorted(((n, k) for k, n in (rep["saturations"] or {}).items() if n), reverse=True)[:3]
        where = ", ".join(f"{k}: {n}" for n, k in worst)
        out.append(
            f"       saturation events on the calibration samples: {t['saturations']}"
            + (f" ({where})" if where else "")
        )
    return "\n".join(out) + "\n"
