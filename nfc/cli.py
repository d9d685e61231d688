"""The ``nfc`` command line.

User errors (bad files, unsupported models, bad targets) print one clear message on stderr and
exit with status 2, never a traceback. ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nfc.errors import NfcError

__all__ = ["main"]


def _fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _shape(s) -> str:
    return "x".join(map(str, s)) if s else "-"


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(x.rstrip() for x in out)


# -- nfc targets ---------------------------------------------------------------------------------------
def cmd_targets(args: argparse.Namespace) -> int:
    from nfc.arch import list_targets, load_target

    names = args.files or list(list_targets())
    cfgs = [load_target(n) for n in names]
    if args.json:
        print(json.dumps([c.to_dict() for c in cfgs], indent=2))
        return 0
    rows = []
    for c in cfgs:
        mem = (
            f"{c.memory.read_gbytes_per_s:g} shared"
            if c.memory.shared
            else f"{c.memory.read_gbytes_per_s:g} r + {c.memory.write_gbytes_per_s:g} w"
        )
        rows.append(
            [
                c.name,
                f"{c.grid.rows}x{c.grid.cols}",
                f"{c.convolvers} x {c.tile.convolver_size}x{c.tile.convolver_size}",
                str(c.macs),
                f"{c.grid.clock_mhz:g}",
                f"{c.peak_gops:.1f}",
                mem,
                f"{c.io.ports} ({c.io.max_read_ports}r/{c.io.max_write_ports}w)",
                f"Q{c.numerics.word_bits - c.numerics.frac_bits}.{c.numerics.frac_bits}",
            ]
        )
    print(
        _table(
            ["target", "grid", "convolvers", "MACs", "MHz", "peak GOPS", "memory GB/s", "ports", "word"],
            rows,
            right={3, 4, 5},
        )
    )
    return 0


# -- nfc inspect ---------------------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from nfc.compiler.analysis import layer_stats, totals
    from nfc.compiler.passes import run_pipeline
    from nfc.frontends.onnx import import_onnx

    graph = run_pipeline(import_onnx(args.model))
    stats = layer_stats(graph)
    tot = totals(stats)
    if args.json:
        doc = {
            "model": str(args.model),
            "inputs": [{"name": n.name, "shape": list(n.attr("onnx_shape"))} for n in graph.inputs],
            "outputs": [{"name": o.name, "shape": list(o.onnx_shape)} for o in graph.outputs],
            "layers": [s.to_dict() for s in stats],
            "totals": tot,
        }
        print(json.dumps(doc, indent=2))
        return 0
    if args.ir:
        print(graph.dump(), end="")
        return 0
    rows = []
    for s in stats:
        mac = _fmt_count(s.macs) if s.macs else "-"
        if s.macs and s.macs != s.dense_macs:
            mac += f" (of {_fmt_count(s.dense_macs)})"
        rows.append(
            [
                str(s.index),
                s.name,
                s.op,
                s.where,
                ", ".join(_shape(i) for i in s.inputs),
                _shape(s.output),
                _fmt_count(s.params) if s.params else "-",
                mac,
                _fmt_count(s.ops) if s.ops else "-",
            ]
        )
    ins = ", ".join(f"{n.name} {_shape(n.attr('onnx_shape'))}" for n in graph.inputs)
    outs = ", ".join(f"{o.name} {_shape(o.onnx_shape)}" for o in graph.outputs)
    print(f"model {args.model}: inputs {ins}; outputs {outs}")
    print(
        _table(
            ["#", "layer", "op", "runs on", "input", "output", "params", "MACs", "ops"],
            rows,
            right={0, 6, 7, 8},
        )
    )
    host = ", ".join(tot["host_layers"]) or "none"
    print(
        f"\ntotal: {tot['layers']} layers, {_fmt_count(tot['params'])} params, "
        f"{_fmt_count(tot['macs'])} MACs (dense {_fmt_count(tot['dense_macs'])}), "
        f"{tot['gop']:.4g} GOP per inference"
    )
    print(f"host ops: {host} ({100 * tot['host_op_share']:.3f}% of ops)")
    return 0


# -- nfc compile ---------------------------------------------------------------------------------------
#: Programs with more passes than this get no listing files unless --listings full (they reach
#: hundreds of megabytes).
LISTING_LIMIT = 20_000


def _calibration_samples(spec: str | None, graph) -> list | None:
    """``--calibrate``: a .npy/.npz file of inputs (N x input shape), or ``random:N``."""
    import numpy as np

    if spec is None:
        return None
    inputs = graph.inputs
    if len(inputs) != 1:
        raise NfcError("--calibrate supports models with one input")
    name, shape = inputs[0].name, tuple(inputs[0].attr("onnx_shape"))
    if spec.startswith("random:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise NfcError(f"--calibrate random:N needs a whole number N, not {spec!r}") from None
        if n < 1:
            raise NfcError(f"--calibrate random:N needs N >= 1, not {n}")
        rng = np.random.default_rng(0)
        return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]
    from pathlib import Path

    path = Path(spec)
    if not path.is_file():
        raise NfcError(f"--calibrate {spec}: no such file; give a .npy/.npz of sample inputs or random:N")
    try:
        data = np.load(path)
        if hasattr(data, "files"):
            data = data[data.files[0]]
    except Exception as exc:
        raise NfcError(f"--calibrate {spec}: cannot read it as .npy/.npz ({exc})") from None
    arr = np.asarray(data, np.float32)
    if arr.shape[1:] == shape[1:]:
        arr = arr[:, None] if len(shape) == arr.ndim else arr
        arr = arr.reshape((-1,) + shape)
    elif arr.shape == shape:
        arr = arr[None]
    else:
        raise NfcError(
            f"--calibrate {spec}: samples of shape {arr.shape[1:]} do not match the input {shape[1:]}"
        )
    return [{name: a} for a in arr]


def cmd_compile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nfc.arch import load_target
    from nfc.compiler.binary import write_program
    from nfc.compiler.driver import compile_graph
    from nfc.compiler.report import build_report, format_report
    from nfc.files import atomic_write
    from nfc.frontends.onnx import import_onnx

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise NfcError(f"-o {out}: exists and is not a directory")
    arch = load_target(args.target)
    graph = import_onnx(args.model)
    samples = _calibration_samples(args.calibrate, graph)
    quiet = args.json or args.quiet

    def progress(msg: str) -> None:
        if not quiet:
            print(f"nfc: {msg}", file=sys.stderr)

    def dump(name: str, text: str) -> None:
        print(f"--- after {name} ---", file=sys.stderr)
        print(text, end="", file=sys.stderr)

    result = compile_graph(
        graph, arch, args.policy, samples, args.verify_each, args.dump_ir_after, dump, progress
    )
    saturations = None
    if samples is not None:
        from nfc.compiler.fixed import run_fixed

        progress("counting saturation on the calibration samples (fixed-point executor)")
        saturations = {}
        for feeds in samples:
            for layer, n in run_fixed(result.lowered, feeds).saturations.items():
                saturations[layer] = saturations.get(layer, 0) + n
    n_passes = len(result.program.passes)
    listings = args.listings == "full" or (args.listings == "auto" and n_passes <= LISTING_LIMIT)
    report = build_report(
        result, arch, saturations, pass_rows=args.listings == "full" or n_passes <= LISTING_LIMIT
    )
    out.mkdir(parents=True, exist_ok=True)
    if not listings and args.listings == "auto":
        progress(
            f"{n_passes} passes: program.json/program.lst not written (--listings full forces them; "
            "nfc disasm DIR prints the listing)"
        )
    files = write_program(result.program, out, listings=listings)
    import json

    atomic_write(out / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write(out / "report.txt", format_report(report, max_passes=50))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_report(report, max_passes=args.passes), end="")
        print(
            f"wrote {', '.join(str(p) for p in sorted(files.values()))}, {out / 'report.txt'}, {out / 'report.json'}"
        )
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from nfc.compiler.binary import disasm_text, read_program

    print(disasm_text(read_program(args.program)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from nfc import __version__

    p = argparse.ArgumentParser(
        prog="nfc",
        description="Compile convnets from ONNX to a NeuFlow-style dataflow accelerator.",
        epilog="Run 'nfc COMMAND --help' for the options of a command.",
    )
    p.add_argument("--version", action="version", version=f"nfc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "targets",
        help="list the accelerator targets (grid, MACs, clock, peak GOPS, bandwidth)",
        description="List the shipped accelerator targets, or check and show target files.",
    )
    t.add_argument(
        "files", nargs="*", metavar="TARGET", help="target names or .toml paths (default: all shipped)"
    )
    t.add_argument("--json", action="store_true", help="print every field as JSON")
    t.set_defaults(func=cmd_targets)

    i = sub.add_parser(
        "inspect",
        help="per-layer shapes, parameters, MACs and where each layer runs",
        description="Import an ONNX model and show, per layer, the op, shapes, parameters, "
        "MACs, ops and whether it runs on the grid or the host.",
    )
    i.add_argument("model", help="path of an .onnx model")
    i.add_argument("--json", action="store_true", help="print machine-readable JSON")
    i.add_argument("--ir", action="store_true", help="print the imported IR as text instead")
    i.set_defaults(func=cmd_inspect)

    from nfc.compiler.driver import STEPS

    c = sub.add_parser(
        "compile",
        help="compile a model to a program of passes for a target",
        description="Lower an ONNX model to fixed point, schedule it onto the tile grid and "
        "write the program (program.nfcp, program.json, program.lst) and a compile "
        "report (report.txt, report.json) into the output directory.",
    )
    c.add_argument("model", help="path of an .onnx model")
    c.add_argument("--target", "-t", default="virtex6", help="target name or .toml path (default: virtex6)")
    c.add_argument("-o", "--output", default="build/nfc", help="output directory (default: build/nfc)")
    c.add_argument(
        "--policy",
        choices=("nfc", "luaflow"),
        default="nfc",
        help="scheduling policy: nfc (default) or luaflow (NeuFlow's own, the baseline)",
    )
    c.add_argument(
        "--calibrate",
        metavar="SAMPLES",
        help="choose fraction bits per tensor from sample inputs: a .npy/.npz file (N x input "
        "shape) or random:N; default: the target's format (Q8.8) everywhere",
    )
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument(
        "--listings",
        choices=("auto", "full", "none"),
        default="auto",
        help=f"write program.json and program.lst (and per-pass rows in the report): auto (default) = "
        f"when at most {LISTING_LIMIT} passes, full = always, none = never (the report keeps its "
        "per-pass rows up to that limit)",
    )
    c.add_argument("--passes", type=int, default=0, metavar="N", help="also list the first N passes")
    c.add_argument(
        "--dump-ir-after",
        metavar="STEP",
        choices=STEPS,
        help=f"print the IR after a step, on stderr ({', '.join(STEPS)})",
    )
    c.add_argument("--verify-each", action="store_true", help="verify the IR after every pass")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    c.set_defaults(func=cmd_compile)

    d = sub.add_parser(
        "disasm",
        help="print a compiled program as text",
        description="Decode a compiled program (a directory or program.nfcp) into a listing.",
    )
    d.add_argument("program", help="program directory or program.nfcp file")
    d.set_defaults(func=cmd_disasm)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NfcError as exc:
        print(f"nfc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nfc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
