"""The nfc compiler: IR, verifier, reference executor and passes."""

from nfc.compiler.executor import run_float
from nfc.compiler.ir import (
    FLOAT32,
    ElemFormat,
    Graph,
    GraphOutput,
    IRError,
    Node,
    Op,
    TensorType,
    make_node,
)
from nfc.compiler.verify import verify

__all__ = [
    "FLOAT32",
    "ElemFormat",
    "Graph",
    "GraphOutput",
    "IRError",
    "Node",
    "Op",
    "TensorType",
    "make_node",
    "run_float",
    "verify",
]
