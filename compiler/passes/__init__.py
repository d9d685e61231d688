"""The compiler's passes, as one explicit ordered pipeline.

Each pass is a pure function ``(Graph, ArchConfig) -> Graph`` in a file of its own; it never
mutates its input and its docstring says what holds afterwards. ``run_pipeline`` runs them in
order, optionally verifying after each (``--verify-each``) and dumping the IR after one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nfc.arch import ArchConfig
from nfc.compiler.ir import Graph
from nfc.compiler.passes.fold_affine import fold_affine
from nfc.compiler.verify import verify

__all__ = ["Pass", "FRONT_PASSES", "run_pipeline", "fold_affine"]

Pass = Callable[[Graph, ArchConfig | None], Graph]

#: Target-independent clean-up, run right after import.
FRONT_PASSES: tuple[tuple[str, Pass], ...] = (("fold_affine", fold_affine),)


def run_pipeline(
    graph: Graph,
    arch: ArchConfig | None = None,
    passes: Sequence[tuple[str, Pass]] = FRONT_PASSES,
    verify_each: bool = False,
    dump_after: str | None = None,
    dump: Callable[[str, Graph], None] | None = None,
) -> Graph:
    """Run ``passes`` in order; verify after each when asked; call ``dump`` after pass ``dump_after``."""
    names = [n for n, _ in passes]
    if dump_after is not None and dump_after not in names:
        from nfc.errors import NfcError

        raise NfcError(f"unknown pass {dump_after!r} for --dump-ir-after; the passes are: {', '.join(names)}")
    for name, fn in passes:
        graph = fn(graph, arch)
        if verify_each:
            verify(graph)
        if dump is not None and name == dump_after:
            dump(name, graph)
    return graph
