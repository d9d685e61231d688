"""Helpers shared by the program-format tests."""

from __future__ import annotations

from nfc.compiler.grid import ConvLayer, Lowered
from nfc.compiler.program import Program


def map_info(program: Program, low: Lowered, buffer: str) -> tuple[int, tuple[int, int]]:
    """(address of map 0, (H, W)) of a buffer as the DMA addresses it."""
    if buffer.endswith("@view"):  # a vector read as rows x K: the source's memory, the layer's view
        src = buffer[: -len("@view")]
        views = {layer.view for layer in low.layers if isinstance(layer, ConvLayer) and layer.src == src}
        assert len(views) == 1
        return program.buffer(src).address, views.pop()
    b = program.buffer(buffer)
    return b.address, b.shape[1:]
