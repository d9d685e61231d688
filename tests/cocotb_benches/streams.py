"""Valid/ready stream helpers for cocotb benches: a driver, a sink and a protocol checker.

Amaranth's Verilog names a stream port ``s`` of a component as three ports: ``s__payload``,
``s__valid`` and ``s__ready``. Every helper here takes the DUT, the stream's name and the clock.

Cycle discipline (the same as an Amaranth testbench's ``ctx.set`` / ``ctx.get`` / ``await ctx.tick()``,
so traces can be compared cycle for cycle with Amaranth's simulator): every helper loops over
cycles as *write inputs just after a rising edge, await* ``ReadOnly`` *, sample the settled signals,
await the next rising edge*. A transfer is counted on a cycle where ``valid & ready`` is 1 in the
settled (``ReadOnly``) values; it takes effect at the following edge. Helpers must be started just
after a rising edge (in the same time step), all on the same edge, so their cycle numbers agree:
cycle 0 is the cycle that follows that edge.

Random choices come from each helper's own ``random.Random(seed)``, with exactly one draw per cycle
whatever the handshake does, so a run is reproducible and an equivalent model can replay it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["ProtocolError", "StreamChecker", "StreamDriver", "StreamSink", "signed_value"]


class ProtocolError(AssertionError):
    """A stream broke the valid/ready rules (raised by :class:`StreamChecker`; fails the test)."""


def signed_value(handle) -> int:
    """A signal's current value as a two's-complement integer (fails on X/Z bits)."""
    return handle.value.to_signed()


def _bit(handle, what: str) -> int:
    text = str(handle.value)
    if text not in ("0", "1"):
        raise ProtocolError(f"{what} is {text!r}, not 0 or 1")
    return int(text)


def _port(dut, stream: str, field: str):
    name = f"{stream}__{field}"
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(f"{dut._name} has no port {name} (stream {stream!r})") from None


class StreamDriver:
    """Sends words into a stream the DUT receives, with random gaps in ``valid``.

    Parameters
    ----------
    dut, stream, clk
        The DUT handle, the stream's port name (``i`` for ``i__payload``/``i__valid``/``i__ready``)
        and the clock signal.
    p_valid : float
        Probability that an idle driver presents the next word on a cycle (1.0: no gaps).
    seed : int
        Seed of the driver's generator (one draw per cycle).
    violate : {None, "payload", "valid"}
        Break the protocol on purpose, only to test :class:`StreamChecker`: while a word is stalled
        (``valid & ~ready`` on the previous cycle), change its payload (``"payload"``) or drop
        ``valid`` for that cycle (``"valid"``).

    Attributes
    ----------
    sent : list of (int, int)
        ``(cycle, word)`` of every transfer, in order.
    """

    def __init__(
        self, dut, stream: str, clk, *, p_valid: float = 1.0, seed: int = 0, violate: str | None = None
    ):
        if violate not in (None, "payload", "valid"):
            raise ValueError(f"violate must be None, 'payload' or 'valid', not {violate!r}")
        self.payload = _port(dut, stream, "payload")
        self.valid = _port(dut, stream, "valid")
        self.ready = _port(dut, stream, "ready")
        self.clk = clk
        self.name = stream
        self.p_valid = p_valid
        self.rng = random.Random(seed)
        self.violate = violate
        self.queue: deque[int] = deque()
        self._pending: int | None = None
        self.sent: list[tuple[int, int]] = []
        self._mask = (1 << len(self.payload)) - 1
        self.valid.value = 0

    def put(self, words: Iterable[int]) -> None:
        """Queue words (two's complement, wrapped to the payload's width) for sending."""
        self.queue.extend(words)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self.queue and self._pending is None

    def start(self):
        """Start driving (call just after a rising edge); returns the cocotb task."""
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle, stalled = 0, False
        while True:
            draw = self.rng.random()
            if self._pending is None and self.queue and draw < self.p_valid:
                self._pending = self.queue.popleft()
            breaking = stalled and self.violate is not None
            presented = self._pending is not None and not (breaking and self.violate == "valid")
            if presented:
                word = self._pending ^ 1 if (breaking and self.violate == "payload") else self._pending
                self.payload.value = word & self._mask
            self.valid.value = int(presented)
            await ReadOnly()
            if presented and _bit(self.ready, f"{self.name}__ready"):
                self.sent.append((cycle, self._pending))
                self._pending = None
            stalled = self._pending is not None
            await RisingEdge(self.clk)
            cycle += 1


class StreamSink:
    """Receives words from a stream the DUT sends, with ``ready`` random on every cycle.

    Parameters
    ----------
    dut, stream, clk
        As for :class:`StreamDriver` (``o`` for ``o__payload``/``o__valid``/``o__ready``).
    p_ready : float
        Probability of ``ready`` on a cycle (1.0: never back-pressures).
    seed : int
        Seed of the sink's generator (one draw per cycle).

    Attributes
    ----------
    received : list of (int, int)
        ``(cycle, word)`` of every transfer (payload read as signed), in order.
    """

    def __init__(self, dut, stream: str, clk, *, p_ready: float = 1.0, seed: int = 0):
        self.payload = _port(dut, stream, "payload")
        self.valid = _port(dut, stream, "valid")
        self.ready = _port(dut, stream, "ready")
        self.clk = clk
        self.name = stream
        self.p_ready = p_ready
        self.rng = random.Random(seed)
        self.received: list[tuple[int, int]] = []
        self.ready.value = 0

    def start(self):
        """Start receiving (call just after a rising edge); returns the cocotb task."""
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle = 0
        while True:
            ready = int(self.rng.random() < self.p_ready)
            self.ready.value = ready
            await ReadOnly()
            if ready and _bit(self.valid, f"{self.name}__valid"):
                self.received.append((cycle, signed_value(self.payload)))
            await RisingEdge(self.clk)
            cycle += 1


class StreamChecker:
    """Watches one stream and fails the test on a protocol violation.

    Rules: ``valid`` and ``ready`` are always 0 or 1 (never X/Z); ``payload`` is defined while ``valid``;
    once ``valid & ~ready``, the next cycle must still have ``valid`` with the same ``payload`` (bit for
    bit). A transfer is counted only on ``valid & ready``. The first violation raises
    :class:`ProtocolError` in the checker's task, which ends the cocotb test as failed.

    Attributes
    ----------
    transfers : list of (int, int)
        ``(cycle, word)`` of every transfer seen (signed).
    stalls : int
        Cycles with ``valid & ~ready`` (to show back-pressure really happened).
    """

    def __init__(self, dut, stream: str, clk):
        self.payload = _port(dut, stream, "payload")
        self.valid = _port(dut, stream, "valid")
        self.ready = _port(dut, stream, "ready")
        self.clk = clk
        self.name = stream
        self.transfers: list[tuple[int, int]] = []
        self.stalls = 0

    def start(self):
        """Start watching (call just after a rising edge); returns the cocotb task."""
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle, held = 0, None  # held: the payload bits of a stalled word
        while True:
            await ReadOnly()
            valid = _bit(self.valid, f"{self.name}__valid on cycle {cycle}")
            ready = _bit(self.ready, f"{self.name}__ready on cycle {cycle}")
            bits = str(self.payload.value)
            if held is not None:
                if not valid:
                    raise ProtocolError(
                        f"stream {self.name}: valid dropped while stalled on cycle {cycle} (the word {held} "
                        "was never transferred)"
                    )
                if bits != held:
                    raise ProtocolError(
                        f"stream {self.name}: payload changed while stalled on cycle {cycle}: {held} -> {bits}"
                    )
            if valid and not set(bits) <= {"0", "1"}:
                raise ProtocolError(f"stream {self.name}: payload is {bits} while valid on cycle {cycle}")
            if valid and ready:
                self.transfers.append((cycle, signed_value(self.payload)))
            if valid and not ready:
                self.stalls += 1
                held = bits
            else:
                held = None
            await RisingEdge(self.clk)
            cycle += 1
