"""The simulation report (``nfc simulate``): per layer and in total, from the cycle model.

Every figure comes from :func:`nfc.sim.cycle.simulate` (cycles, stalls, event counts, outputs) and
the power model (:class:`nfc.sim.power.PowerModel`); the compiler's analytical estimate is shown
beside the simulated cycles only for comparison. Layers are those of the lowered network in
execution order; a pass belongs to its first layer (``PassTiming.layers[0]``), layers fused into
another layer's passes (pooling after a convolution) are listed with that layer, as in the
compile report (``compiler/report.py``).

Useful work counts the network's operations (``compiler/analysis.py``): the grid's share of them
(``grid_ops``: 2 per useful MAC plus the mapper and ALU operations the network needs) per frame
over the simulated latency gives the useful GOPS; without the network's graph (a program simulated
without its model) it falls back to 2 per useful MAC. MAC utilisation is useful MACs over
(cycles x MAC units).

The comparison block (:func:`compare_outputs`) holds, per network output, the largest absolute
error against a reference run, the SNR in dB (``10 log10(sum ref^2 / sum (ref - got)^2)``) and,
for classifier-like outputs (shape ``(1, N)``, N > 1), whether the top-1 classes agree. The report
is plain JSON (no NaN or infinity): an SNR that is infinite (identical outputs) is ``null`` with
``exact: true``; ``-inf`` (an all-zero reference) is ``null`` with ``exact: false``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.analysis import layer_stats, totals
from nfc.compiler.driver import CompileResult
from nfc.compiler.grid import ConvLayer, HostLayer
from nfc.sim.cycle import PassTiming, SimResult
from nfc.sim.events import Events
from nfc.sim.power import PowerModel
from nfc.text import si, table

__all__ = ["build_sim_report", "compare_outputs", "format_sim_report", "pass_row"]


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def _sum_events(passes: list[PassTiming]) -> Events:
    total = Events()
    for p in passes:
        total = total + p.events
    return total


def _busy(passes: list[PassTiming]) -> dict[str, int]:
    """Cycles on which each operator (``conv:<tile>``, ``map:<tile>``, ``alu:<tile>``) accepted a word."""
    out: dict[str, int] = defaultdict(int)
    for p in passes:
        for unit, n in p.busy.items():
            out[unit] += n
    return dict(sorted(out.items(), key=lambda kv: (kv[0].split(":")[0], int(kv[0].split(":")[1]))))


def pass_row(p: PassTiming) -> dict[str, Any]:
    """One pass of the report: index, kind, layers, cycles and their breakdown, the compiler's estimate."""
    return {
        "index": p.index,
        "kind": p.kind,
        "layers": list(p.layers),
        "cycles": p.cycles,
        "config_cycles": p.config_cycles,
        "hidden_config_cycles": p.hidden_config_cycles,
        "stream_cycles": p.stream_cycles,
        "drain_cycles": p.drain_cycles,
        "memory_stall_cycles": p.memory_stall_cycles,
        "backpressure_stall_cycles": p.backpressure_stall_cycles,
        "beats": p.beats,
        "useful_macs": p.useful_macs,
        "busy": dict(sorted(p.busy.items())),
        "estimate": p.estimate,
    }


def _layer_row(name: str, typ: str, where: str, ps: list[PassTiming], arch: ArchConfig) -> dict[str, Any]:
    ev = _sum_events(ps)
    cycles = sum(p.cycles for p in ps)
    useful = sum(p.useful_macs for p in ps)
    return {
        "name": name,
        "type": typ,
        "where": where,
        "passes": len(ps),
        "fused": sorted({n for p in ps for n in p.layers[1:]}),
        "cycles": cycles,
        "config_cycles": sum(p.config_cycles for p in ps),
        "stream_cycles": sum(p.stream_cycles for p in ps),
        "drain_cycles": sum(p.drain_cycles for p in ps),
        "memory_stall_cycles": sum(p.memory_stall_cycles for p in ps),
        "backpressure_stall_cycles": sum(p.backpressure_stall_cycles for p in ps),
        "useful_macs": useful,
        "macs": ev.macs,
        "mac_utilisation": _ratio(useful, cycles * arch.macs),
        "dram_bytes_read": ev.dram_bytes_read,
        "dram_bytes_written": ev.dram_bytes_written,
        "config_words": ev.config_words,
        "busy": _busy(ps),
        "estimate_cycles": sum(p.estimate for p in ps),
    }


def _snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    signal = float(np.sum(ref * ref))
    noise = float(np.sum((ref - got) ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def compare_outputs(
    got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], reference: str = "onnxruntime"
) -> dict[str, Any]:
    """Per output of ``ref``: max abs error of ``got``, SNR in dB, top-1 agreement for ``(1, N)`` outputs."""
    rows = []
    for name, r in ref.items():
        r64 = np.asarray(r, np.float64)
        g64 = np.asarray(got[name], np.float64).reshape(r64.shape)
        snr = _snr_db(r64, g64)
        row: dict[str, Any] = {
            "name": name,
            "shape": list(r64.shape),
            "max_abs_error": float(np.max(np.abs(r64 - g64))) if r64.size else 0.0,
            "reference_max_abs": float(np.max(np.abs(r64))) if r64.size else 0.0,
            "snr_db": snr if math.isfinite(snr) else None,
            "exact": snr == math.inf,
            "top1": None,
        }
        if r64.ndim == 2 and r64.shape[0] == 1 and r64.shape[1] > 1:
            a, b = int(np.argmax(r64[0])), int(np.argmax(g64[0]))
            row["top1"] = {"agree": a == b, "reference": a, "simulated": b}
        rows.append(row)
    return {"reference": reference, "outputs": rows}


def build_sim_report(
    result: SimResult,
    compiled: CompileResult | None,
    arch: ArchConfig,
    comparison: dict | None,
    *,
    model: str | None = None,
    policy: str | None = None,
    input_desc: str | None = None,
    wall_seconds: float | None = None,
    pass_rows: int | None = None,
) -> dict[str, Any]:
    """Everything ``nfc simulate`` shows, as plain JSON-serialisable data.

    ``compiled``: the network compiled (or only lowered: ``program`` None) for ``arch``; only its
    ``lowered`` (layer order and types) and ``graph`` (the network's useful operations) are used,
    and its ``program`` for the default ``model``/``policy``. None falls back to the passes' own
    layer names and 2 ops per useful MAC. ``comparison``: from :func:`compare_outputs`,
    or None. ``wall_seconds``: the simulator's run time (for its speed figures). ``pass_rows``:
    how many per-pass rows to include (None: all).
    """
    passes = result.passes
    hosts = result.host_steps
    by_layer: dict[str, list[PassTiming]] = defaultdict(list)
    for p in passes:
        by_layer[p.layers[0]].append(p)
    in_passes = {n for p in passes for n in p.layers}
    host_ops = {h.layer: h.ops for h in hosts}
    layers: list[dict[str, Any]] = []
    seen: set[str] = set()
    if compiled is not None:
        for layer in compiled.lowered.layers:
            if isinstance(layer, ConvLayer):
                typ = layer.kind
            else:
                typ = type(layer).__name__.replace("Layer", "").lower()
            where = "host" if isinstance(layer, HostLayer) else "grid"
            row = _layer_row(layer.name, typ, where, by_layer.get(layer.name, []), arch)
            if isinstance(layer, HostLayer):
                row["host_ops"] = host_ops.get(layer.name, 0)
                row["why"] = layer.why
            elif not row["passes"] and layer.name in in_passes:
                row["fused_into_previous"] = True
            layers.append(row)
            seen.add(layer.name)
    # layers the lowered network does not name (or no lowered network): in order of execution
    steps = sorted(
        [(p.index, p.layers[0], p.kind, None) for p in passes] + [(h.index, h.layer, h.op, h) for h in hosts]
    )
    for _, name, kind, host in steps:
        if name in seen:
            continue
        seen.add(name)
        if host is not None:
            row = _layer_row(name, kind, "host", [], arch)
            row["host_ops"] = host_ops.get(name, 0)
        else:
            row = _layer_row(name, kind, "grid", by_layer[name], arch)
        layers.append(row)

    ev = _sum_events(passes)
    cycles = sum(p.cycles for p in passes)
    useful_macs = sum(p.useful_macs for p in passes)
    seconds = cycles / arch.clock_hz if cycles else 0.0
    if compiled is not None:
        net = totals(layer_stats(compiled.graph))
        grid_ops = net["grid_ops"]
        net_host_ops, host_share, host_layers = net["host_ops"], net["host_op_share"], net["host_layers"]
        ops_counted = "network grid ops (compiler/analysis.py)"
        network_macs = net["macs"]
    else:
        grid_ops = 2 * useful_macs
        net_host_ops = sum(h.ops for h in hosts)
        host_share = _ratio(net_host_ops, net_host_ops + grid_ops)
        host_layers = [h.layer for h in hosts]
        ops_counted = "2 per useful MAC (no network graph)"
        network_macs = None
    useful_gops = grid_ops / seconds / 1e9 if seconds else 0.0
    config_cycles = sum(p.config_cycles for p in passes)
    memory_stalls = sum(p.memory_stall_cycles for p in passes)
    bp_stalls = sum(p.backpressure_stall_cycles for p in passes)
    estimate = sum(p.estimate for p in passes)
    power = PowerModel(arch).summary(ev, float(grid_ops))
    power["energy_per_frame_j"] = power["joules"]
    sim: dict[str, Any] = {"wall_seconds": None, "cycles_per_s": None, "macs_per_s": None}
    if wall_seconds is not None:
        sim = {
            "wall_seconds": float(wall_seconds),
            "cycles_per_s": _ratio(cycles, wall_seconds),
            "macs_per_s": _ratio(ev.macs, wall_seconds),
        }
    program = compiled.program if compiled is not None else None
    n_rows = len(passes) if pass_rows is None else min(pass_rows, len(passes))
    return {
        "model": model if model is not None else (program.model if program is not None else ""),
        "target": arch.name,
        "policy": policy if policy is not None else (program.policy if program is not None else ""),
        "timing": "cycle model",
        "input": input_desc,
        "layers": layers,
        "passes": [pass_row(p) for p in passes[:n_rows]],
        "passes_listed": n_rows == len(passes),
        "host_steps": [{"index": h.index, "layer": h.layer, "op": h.op, "ops": h.ops} for h in hosts],
        "totals": {
            "passes": len(passes),
            "host_steps": len(hosts),
            "cycles": cycles,
            "config_cycles": config_cycles,
            "hidden_config_cycles": sum(p.hidden_config_cycles for p in passes),
            "stream_cycles": sum(p.stream_cycles for p in passes),
            "drain_cycles": sum(p.drain_cycles for p in passes),
            "beats": sum(p.beats for p in passes),
            "latency_ms": seconds * 1e3,
            "frames_per_s": 1.0 / seconds if seconds else 0.0,
            "useful_macs": useful_macs,
            "macs": ev.macs,
            "network_macs": network_macs,
            "grid_ops": grid_ops,
            "ops_counted": ops_counted,
            "useful_gops": useful_gops,
            "peak_gops": arch.peak_gops,
            "utilisation": _ratio(useful_gops, arch.peak_gops),
            "mac_utilisation": _ratio(useful_macs, cycles * arch.macs),
            "stall_cycles": {
                "memory": memory_stalls,
                "backpressure": bp_stalls,
                "configuration": config_cycles,
            },
            "dram_bytes_read": ev.dram_bytes_read,
            "dram_bytes_written": ev.dram_bytes_written,
            "dram_bytes": ev.dram_bytes_read + ev.dram_bytes_written,
            "config_words": ev.config_words,
            "events": ev.as_dict(),
            "busy": (busy := _busy(passes)),
            "busy_share": {unit: _ratio(n, cycles) for unit, n in busy.items()},
            "estimate_cycles": estimate,
            "cycles_over_estimate": _ratio(cycles, estimate),
            "host_ops": net_host_ops,
            "host_op_share": host_share,
            "host_layers": host_layers,
        },
        "power": power,
        "simulator": sim,
        "comparison": comparison,
    }


def _snr_text(o: dict) -> str:
    if o["snr_db"] is not None:
        return f"{o['snr_db']:.1f} dB"
    return "inf (exact)" if o["exact"] else "-inf"


def format_sim_report(rep: dict, max_passes: int = 0) -> str:
    """The report as text: per-layer table, optionally the first ``max_passes`` passes, totals and
    the comparison."""
    head = f"{rep['model']} on {rep['target']} ({rep['policy']} policy, {rep['timing']})"
    out = [head + (f", input {rep['input']}" if rep.get("input") else "")]
    cols = ["layer", "type", "where", "passes", "cycles", "config", "mem stall", "drain", "bp stall"]
    cols += ["MACs", "util", "DRAM rd", "DRAM wr", "cfg words", "notes"]
    rows = []
    for lr in rep["layers"]:
        if lr.get("fused_into_previous"):
            continue
        note = ("+ fused " + ", ".join(lr["fused"])) if lr["fused"] else ""
        if lr["where"] == "host":
            note = f"host: {si(lr.get('host_ops', 0))} ops" + (f" ({lr['why']})" if lr.get("why") else "")
            rows.append([lr["name"], lr["type"], "host", "-"] + ["-"] * 10 + [note])
            continue
        rows.append(
            [
                lr["name"],
                lr["type"],
                lr["where"],
                str(lr["passes"]),
                si(lr["cycles"]),
                si(lr["config_cycles"]),
                si(lr["memory_stall_cycles"]),
                si(lr["drain_cycles"]),
                si(lr["backpressure_stall_cycles"]),
                si(lr["useful_macs"]),
                f"{100 * lr['mac_utilisation']:.1f}%",
                si(lr["dram_bytes_read"]),
                si(lr["dram_bytes_written"]),
                si(lr["config_words"]),
                note,
            ]
        )
    out += table(cols, rows, left={0, 1, 2, 14})
    if max_passes:
        out.append("")
        prow = []
        for p in rep["passes"][:max_passes]:
            prow.append(
                [
                    str(p["index"]),
                    p["kind"],
                    p["layers"][0] + (f" +{len(p['layers']) - 1}" if len(p["layers"]) > 1 else ""),
                    str(p["cycles"]),
                    str(p["estimate"]),
                    str(p["config_cycles"]),
                    str(p["memory_stall_cycles"]),
                    str(p["drain_cycles"]),
                    str(p["backpressure_stall_cycles"]),
                ]
            )
        pcols = ["pass", "kind", "layers", "cycles", "estimate", "config", "mem stall", "drain", "bp stall"]
        out += table(pcols, prow, left={1, 2})
        shown = min(max_passes, len(rep["passes"]))
        if rep["totals"]["passes"] > shown:
            out.append(f"... {rep['totals']['passes'] - shown} more passes (--json has them)")
    t = rep["totals"]
    pw = rep["power"]
    st = t["stall_cycles"]
    cyc = t["cycles"]
    out.append("")
    out.append(
        f"total: {t['passes']} passes, {t['host_steps']} host steps, {si(cyc)} cycles, "
        f"{t['latency_ms']:.4g} ms per frame, {t['frames_per_s']:.2f} frames/s"
    )
    out.append(
        f"       {t['useful_gops']:.2f} useful GOPS of {t['peak_gops']:.1f} peak ({100 * t['utilisation']:.1f}%), "
        f"MAC utilisation {100 * t['mac_utilisation']:.1f}% ({si(t['useful_macs'])} useful MACs)"
    )
    out.append(
        f"       stalls: memory {si(st['memory'])} cycles ({100 * _ratio(st['memory'], cyc):.1f}%), "
        f"back-pressure {si(st['backpressure'])}, configuration {si(st['configuration'])} "
        f"({100 * _ratio(st['configuration'], cyc):.1f}%, {si(t['hidden_config_cycles'])} more hidden behind "
        f"streaming); drain {si(t['drain_cycles'])}"
    )
    out.append(
        f"       DRAM {si(t['dram_bytes_read'])}B read, {si(t['dram_bytes_written'])}B written per frame; "
        f"{si(t['config_words'])} configuration words"
    )
    ev = t["events"]
    out.append(
        f"       events: {si(ev['macs'])} MACs, {si(ev['mapper_ops'])} mapper, {si(ev['alu_ops'])} ALU, "
        f"{si(ev['fifo_words'])} FIFO words, {si(ev['router_hops'])} router hops"
    )
    if t.get("busy_share"):
        out.append(
            "       operators busy: "
            + ", ".join(f"{unit} {100 * share:.1f}%" for unit, share in t["busy_share"].items())
        )
    comps = sorted(((w, k) for k, w in pw["watts_by_component"].items() if k != "total"), reverse=True)
    out.append(
        f"       power {pw['watts']:.3g} W, {pw['gops_per_w']:.3g} GOPS/W, "
        f"{1e3 * pw['energy_per_frame_j']:.4g} mJ per frame"
    )
    out.append("       watts by component: " + ", ".join(f"{k} {w:.3g}" for w, k in comps))
    out.append(
        f"       compiler estimate {si(t['estimate_cycles'])} cycles (simulated / estimate "
        f"{t['cycles_over_estimate']:.3f})"
    )
    host = ", ".join(t["host_layers"]) or "none"
    out.append(f"       host ops: {host} ({100 * t['host_op_share']:.3f}% of the network's ops)")
    sim = rep["simulator"]
    if sim["wall_seconds"] is not None:
        out.append(
            f"       simulator: {sim['wall_seconds']:.2f} s wall, {si(sim['cycles_per_s'])} cycles/s, "
            f"{si(sim['macs_per_s'])} MAC/s"
        )
    cmp = rep.get("comparison")
    if cmp:
        out.append("")
        out.append(f"against {cmp['reference']}:")
        crow = []
        for o in cmp["outputs"]:
            top1 = ""
            if o["top1"] is not None:
                tp = o["top1"]
                top1 = (
                    f"agree (class {tp['reference']})"
                    if tp["agree"]
                    else f"DIFFER ({tp['simulated']} vs {tp['reference']})"
                )
            crow.append(
                [
                    o["name"],
                    "x".join(map(str, o["shape"])),
                    f"{o['max_abs_error']:.4g}",
                    f"{o['reference_max_abs']:.4g}",
                    _snr_text(o),
                    top1,
                ]
            )
        out += table(
            ["output", "shape", "max abs error", "max abs ref", "SNR", "top-1"], crow, left={0, 1, 5}
        )
    return "\n".join(out) + "\n"
