"""The performance goals (issue 7) as lines of `make bench`: measured figure, baseline, ratio, bound.

Every figure comes from the rows ``scripts/bench.py`` measured in the same run (cycle model, both
policies side by side) and from :func:`compile_times` (median of several in-process compiles).
Where a goal is beyond what the hardware can do, the line shows the lower bound on cycles
(``compiler/bounds.py``) as frames/s: a schedule cannot beat it on that hardware.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from nfc.arch import load_target
from nfc.compiler.driver import compile_graph
from nfc.frontends.onnx import import_onnx

__all__ = ["COMPILE_GOALS", "compile_times", "goals", "goals_table"]

#: Compile-time goals: network -> seconds (virtex6, nfc policy, median of the runs).
COMPILE_GOALS = {"resnet18": 5.0, "vgg16_small": 10.0}
#: Largest allowed deviation of the compiler's estimate from the cycle model.
ESTIMATE_TOLERANCE = 0.02


def compile_times(models: Path, runs: int, names: list[str]) -> dict[str, dict]:
    """Median wall seconds of ``runs`` compiles (in this process, ONNX import excluded) of each of
    ``names`` (virtex6, nfc policy)."""
    out = {}
    arch = load_target("virtex6")
    for name in names:
        graph = import_onnx(models / f"{name}.onnx")
        walls = []
        for k in range(runs):
            print(f"bench: compile time of {name}, run {k + 1} of {runs}", file=sys.stderr)
            t0 = time.perf_counter()
            compile_graph(graph, arch, "nfc")
            walls.append(time.perf_counter() - t0)
        out[name] = {"median_s": statistics.median(walls), "runs_s": walls}
    return out


def _row(rows: list[dict], network: str, target: str, policy: str) -> dict | None:
    return next(
        (r for r in rows if (r["network"], r["target"], r["policy"]) == (network, target, policy)), None
    )


def goals(rows: list[dict], compiled: dict[str, dict] | None) -> list[dict]:
    """One record per goal line: what, target value, measured, baseline, ratio, bound, met."""
    lines: list[dict] = []

    def fps_goal(goal: str, network: str, target: str, want: float, what: str) -> None:
        nfc, base = _row(rows, network, target, "nfc"), _row(rows, network, target, "luaflow")
        wanted = f">= {want:g} frames/s" if want else "reported"
        if nfc is None or base is None:
            lines.append({"goal": goal, "what": what, "want": wanted, "measured": None})
            return
        lines.append(
            {
                "goal": goal,
                "what": what,
                "want": wanted,
                "measured": f"{nfc['frames_per_s']:.2f} frames/s",
                "baseline": f"{base['frames_per_s']:.2f}",
                "ratio": f"{nfc['frames_per_s'] / base['frames_per_s']:.2f}x",
                "bound": f"{nfc['bound_frames_per_s']:.2f} frames/s",
                "met": nfc["frames_per_s"] >= want,
            }
        )

    fps_goal("1", "scene_parsing", "virtex6", 20, "scene parsing 320x240 on virtex6, NeuFlow's convolver")
    fps_goal(
        "2",
        "scene_parsing",
        "virtex6_packed",
        35,
        "scene parsing on virtex6's 400 MACs and memory, beyond NeuFlow (virtex6_packed: packing, 8 ports, accumulation buffers)",
    )
    for network, want in (
        ("face_detector", 3.0),
        ("neuflow_test", 3.0),
        ("resnet18", 1.5),
        ("mobilenet_v2", 1.5),
    ):
        nfc, base = _row(rows, network, "virtex6", "nfc"), _row(rows, network, "virtex6", "luaflow")
        line = {
            "goal": "3",
            "what": f"MAC utilisation, {network} on virtex6",
            "want": f">= {want:g}x luaflow",
        }
        if nfc is not None and base is not None:
            ratio = nfc["mac_utilisation"] / base["mac_utilisation"]
            # the bound on cycles is a bound on utilisation: the best ratio any schedule could reach
            best = base["cycles"] / nfc["bounds"]["bound"]
            line |= {
                "measured": f"{100 * nfc['mac_utilisation']:.1f}%",
                "baseline": f"{100 * base['mac_utilisation']:.1f}%",
                "ratio": f"{ratio:.2f}x",
                "bound": f"{best:.2f}x",
                "met": ratio >= want,
            }
        else:
            line["measured"] = None
        lines.append(line)
    fps_goal("4", "scene_parsing", "asic45", 40, "scene parsing 320x240 on asic45")
    nfc = _row(rows, "scene_parsing", "asic45", "nfc")
    if nfc is not None:
        lines.append(
            {
                "goal": "4",
                "what": "GOPS/W of scene parsing on asic45 (published ASIC: about 500)",
                "want": "reported",
                "measured": f"{nfc['gops_per_w']:.1f} GOPS/W",
                "baseline": f"{_row(rows, 'scene_parsing', 'asic45', 'luaflow')['gops_per_w']:.1f}",
                "ratio": f"{nfc['gops_per_w'] / 500:.2f}x of 500",
                "bound": "",
                "met": True,
            }
        )
    fps_goal(
        "5", "scene_parsing_pyramid", "virtex6", 0, "3-scale pyramid (320x240, 160x120, 80x60), one program"
    )
    for name, limit in COMPILE_GOALS.items():
        line = {"goal": "6", "what": f"compile time of {name} (virtex6, nfc)", "want": f"< {limit:g} s"}
        if compiled and name in compiled:
            t = compiled[name]
            line |= {
                "measured": f"{t['median_s']:.2f} s (median of {len(t['runs_s'])})",
                "baseline": "",
                "ratio": "",
                "bound": "",
                "met": t["median_s"] < limit,
            }
        else:
            line["measured"] = None
        lines.append(line)
    worst = max(rows, key=lambda r: abs(r["estimate_cycles"] / r["cycles"] - 1), default=None)
    if worst is not None:
        dev = worst["estimate_cycles"] / worst["cycles"] - 1
        lines.append(
            {
                "goal": "6",
                "what": f"compiler estimate vs cycle model, worst of {len(rows)} programs",
                "want": f"within {100 * ESTIMATE_TOLERANCE:g}%",
                "measured": f"{100 * dev:+.2f}% ({worst['network']}, {worst['target']}, {worst['policy']})",
                "baseline": "",
                "ratio": "",
                "bound": "",
                "met": abs(dev) <= ESTIMATE_TOLERANCE,
            }
        )
    return lines


def goals_table(lines: list[dict]) -> str:
    out = [
        "| goal | what | wanted | measured (nfc) | luaflow | ratio | bound | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in lines:
        if g["measured"] is None:
            out.append(
                f"| {g['goal']} | {g['what']} | {g['want']} | not measured in this run (--big) | | | | |"
            )
            continue
        met = "yes" if g["met"] else "no"
        out.append(
            f"| {g['goal']} | {g['what']} | {g['want']} | {g['measured']} | {g['baseline']} | {g['ratio']} | "
            f"{g['bound']} | {met} |"
        )
    return "\n".join(out)
