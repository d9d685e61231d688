"""nfc: compile convolutional networks from ONNX to a NeuFlow-style dataflow accelerator.

Public API::

    from nfc import load_target, import_onnx, run_float, compile_graph, simulate
    arch = load_target("virtex6")
    graph = import_onnx("model.onnx")
    result = compile_graph(graph, arch)  # .program, .lowered, .graph, .formats
    run = simulate(result.program, result.lowered, {"input": x}, arch)  # .outputs, .passes (timing)
"""

from nfc.arch import ArchConfig, list_targets, load_target
from nfc.errors import ModelError, NfcError, TargetError

__version__ = "0.1.0"

__all__ = [
    "ArchConfig",
    "ModelError",
    "NfcError",
    "TargetError",
    "compile_graph",
    "import_onnx",
    "list_targets",
    "load_target",
    "run_float",
    "simulate",
    "__version__",
]


def __getattr__(name: str):
    # the frontend and compiler import onnx and networkx: load them only when asked for
    if name == "import_onnx":
        from nfc.frontends.onnx import import_onnx

        return import_onnx
    if name == "run_float":
        from nfc.compiler.executor import run_float

        return run_float
    if name == "compile_graph":
        from nfc.compiler.driver import compile_graph

        return compile_graph
    if name == "simulate":
        from nfc.sim.cycle import simulate

        return simulate
    raise AttributeError(f"module 'nfc' has no attribute {name!r}")
