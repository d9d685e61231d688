"""Plain-text output shared by the command line and the reports: counts and aligned tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["si", "table"]


def si(v: float) -> str:
    """``v`` with three significant digits and a k/M/G suffix (``1.23M``)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = frozenset(),
    left: Collection[int] | None = None,
) -> list[str]:
    """The lines of a table: header, dashes, rows; columns two spaces apart. Columns in ``right``
    are right-aligned (numbers); or, with ``left`` given, every column not in ``left``."""
    if left is not None:
        right = set(range(len(head))) - set(left)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
