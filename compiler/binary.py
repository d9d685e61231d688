"""The program file: a compiled :class:`~nfc.compiler.program.Program` on disk, and its listings.

:func:`write_program` writes three files into a directory:

``program.nfcp``
    the binary program (layout below): what a runtime loads.
``program.json``
    a machine-readable listing: header, buffers, inputs and outputs, and every step; a pass with
    its layers, MACs, cycle estimate, the fields :func:`~nfc.compiler.decode.decode_pass` reads
    from its configuration words and the words themselves as hex strings.
``program.lst``
    the text listing (:func:`disasm_text`): one line per configuration word.

The listings are made from the binary as read back, so they show exactly what the file holds.
Every file is written under a temporary name in the same directory and renamed into place
(``os.replace``), so an interrupted write never leaves half a file; ``program.nfcp`` is replaced
last. Output is byte-identical for identical programs: no timestamps, no paths, fixed key order.

Binary layout (``PROGRAM_VERSION`` 1; all integers little-endian, unsigned)
---------------------------------------------------------------------------
A *string* is ``u32 n`` then ``n`` bytes of UTF-8.

=========================  ==========================================================================
field                      encoding
=========================  ==========================================================================
magic                      4 bytes ``b"NFCP"``
version                    u16 (``PROGRAM_VERSION``)
flags                      u16, 0 (reserved)
target, model, policy      3 strings
memory_words               u64
buffers                    u32 count, then per buffer: name string, u64 address, u32 C, u32 H,
                           u32 W, u8 frac, u8 bits, kind string, root string (the buffer owning
                           the memory of a view or slice; empty for a buffer that owns its own)
inputs                     u32 count, then per input: name string, buffer string, u8 rank,
                           rank x u32 dims
outputs                    as inputs
steps                      u32 count, then per step a u8 type: 0 pass, 1 host step
  pass (type 0)            u32 index, kind string, u32 n + n layer strings, u64 macs,
                           estimate as u32 n + n x (key string, u64 value) sorted by key,
                           u32 n + n x u64 configuration words
  host step (type 1)       u32 index, layer string, op string, u32 n + n source-buffer strings,
                           destination-buffer string, u64 ops
crc                        u32 ``zlib.crc32`` of every byte before it
=========================  ==========================================================================

:func:`read_program` reads a file (or the ``program.nfcp`` of a directory) back into a
:class:`LoadedProgram`, decoding every pass's words; any problem with the file (not an nfc
program, a newer format, truncated, corrupt) raises :class:`~nfc.errors.NfcError` with one line
saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import operator
import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from nfc.compiler.decode import DecodedPass, decode_pass, format_fields, split_word
from nfc.compiler.program import PROGRAM_VERSION, BufferInfo, HostStep, LazyPass, Pass, Program
from nfc.errors import NfcError
from nfc.files import atomic_write, atomic_write_with
from nfc.text import table

__all__ = [
    "MAGIC",
    "FILES",
    "LoadedPass",
    "LoadedProgram",
    "program_bytes",
    "parse_program",
    "write_program",
    "read_program",
    "as_loaded",
    "program_json",
    "json_text",
    "disasm_text",
]

MAGIC = b"NFCP"
#: The files :func:`write_program` writes, by key.
FILES = {"nfcp": "program.nfcp", "json": "program.json", "lst": "program.lst"}
_STEP_PASS, _STEP_HOST = 0, 1
_COMPILE_HINT = "compile one with `nfc compile MODEL -o DIR`"
_RECOMPILE_HINT = "compile the model again with `nfc compile MODEL -o DIR`"


@dataclass(frozen=True, slots=True)
class LoadedPass:
    """A pass as the program file holds it: its words, what they say, and the compiler's notes."""

    index: int
    kind: str
    layers: tuple[str, ...]
    macs: int
    estimate: dict[str, int]
    words: tuple[int, ...]
    decoded: DecodedPass


@dataclass(frozen=True)
class LoadedProgram:
    """A program read from a file. ``inputs``/``outputs``: (name, buffer, dims), as in Program."""

    version: int
    target: str
    model: str
    policy: str
    memory_words: int
    buffers: tuple[BufferInfo, ...]
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    steps: tuple[LoadedPass | HostStep, ...]
    source: str = field(default="", compare=False)  # where it was read from (messages only)

    @property
    def passes(self) -> tuple[LoadedPass, ...]:
        return tuple(s for s in self.steps if isinstance(s, LoadedPass))

    def buffer(self, name: str) -> BufferInfo:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int(self, fmt: str, value: int, what: str) -> None:
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise ValueError(f"{what}: {value!r} is not an integer") from None
        try:
            self.parts.append(struct.pack("<" + fmt, value))
        except struct.error:
            bits = struct.calcsize(fmt) * 8
            raise ValueError(f"{what}: {value} does not fit an unsigned {bits}-bit field") from None

    def u8(self, v: int, what: str) -> None:
        self.int("B", v, what)

    def u16(self, v: int, what: str) -> None:
        self.int("H", v, what)

    def u32(self, v: int, what: str) -> None:
        self.int("I", v, what)

    def u64(self, v: int, what: str) -> None:
        self.int("Q", v, what)

    def str(self, s: str, what: str) -> None:
        if not isinstance(s, str):
            raise ValueError(f"{what}: {s!r} is not a string")
        data = s.encode("utf-8")
        self.u32(len(data), what)
        self.parts.append(data)

    def strs(self, items: tuple[str, ...], what: str) -> None:
        self.u32(len(items), what)
        for s in items:
            self.str(s, what)

    def words(self, words: tuple[int, ...], what: str) -> None:
        self.u32(len(words), what)
        try:  # array('Q') refuses negative, too large and non-integer values
            packed = array("Q", words)
        except (OverflowError, TypeError):
            bad = [w for w in words if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < 1 << 64]
            raise ValueError(f"{what}: {bad[0]!r} is not a 64-bit word") from None
        if sys.byteorder != "little":
            packed.byteswap()
        self.parts.append(packed.tobytes())


def _io(w: _Writer, items, what: str) -> None:
    w.u32(len(items), what)
    for name, buffer, dims in items:
        w.str(name, what)
        w.str(buffer, what)
        w.u8(len(dims), f"{what} {name!r} rank")
        for d in dims:
            w.u32(d, f"{what} {name!r} dimension")


_U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack
_PASS_HEAD = struct.Struct("<BI").pack  # step type, pass index


class _FastPasses:
    """Writes passes as :class:`_Writer` does, faster: the strings a program repeats (pass kinds,
    layer names, estimate keys) are encoded once, each pass becomes one bytes object, and the words
    of a :class:`~nfc.compiler.program.LazyPass` go from its array without a tuple being made.

    :meth:`bytes` returns None when a field is not a plain value it handles (not exactly an
    ``int``/``str``/``tuple``/``dict``, or out of range); the caller then writes that pass with the
    checked :class:`_Writer`, which raises the error or writes it the same way.
    """

    def __init__(self) -> None:
        self.texts: dict = {}  # str -> its string encoding; tuple of str -> count + encodings
        self.estimates: dict[tuple, tuple[tuple, bytes, tuple[bytes, ...]]] = {}

    def _str(self, s) -> bytes | None:
        if type(s) is not str:
            return None
        out = self.texts.get(s)
        if out is None:
            data = s.encode("utf-8")
            if len(data) >= 1 << 32:
                return None
            out = self.texts[s] = _U32(len(data)) + data
        return out

    def _strs(self, items) -> bytes | None:
        if type(items) is not tuple:
            return None
        try:
            out = self.texts.get(items)
        except TypeError:  # an unhashable item: not a string
            return None
        if out is None:
            parts = [self._str(s) for s in items]
            if any(p is None for p in parts):
                return None
            out = self.texts[items] = _U32(len(items)) + b"".join(parts)
        return out

    def bytes(self, step: Pass) -> bytes | None:
        index, macs, est = step.index, step.macs, step.estimate
        if not (type(index) is int and 0 <= index < 1 << 32 and type(macs) is int and 0 <= macs < 1 << 64):
            return None
        kind = self._str(step.kind)
        layers = self._strs(step.layers)
        if kind is None or layers is None or type(est) is not dict:
            return None
        order = tuple(est)
        known = self.estimates.get(order)
        if known is None:
            if any(type(k) is not str for k in order):
                return None
            keys = tuple(sorted(order))
            names = tuple(self._str(k) for k in keys)
            if None in names:
                return None
            known = self.estimates[order] = (keys, _U32(len(keys)), names)
        keys, count, names = known
        parts = [_PASS_HEAD(_STEP_PASS, index), kind, layers, _U64(macs), count]
        for key, name in zip(keys, names, strict=True):
            value = est[key]
            if type(value) is not int or not 0 <= value < 1 << 64:
                return None
            parts += (name, _U64(value))
        packed = step.packed_words() if isinstance(step, LazyPass) else None
        if packed is not None:  # the words still in the scheduler's array: no tuple made
            parts += (_U32(len(packed) // 8), packed)
            return b"".join(parts)
        try:
            packed = array("Q", step.config_words)
        except (OverflowError, TypeError):
            return None
        if sys.byteorder != "little":
            packed.byteswap()
        parts += (_U32(len(packed)), packed)
        return b"".join(parts)


def program_bytes(program: Program) -> bytes:
    """The binary program file of ``program`` (layout in the module docstring).

    Raises ``ValueError`` when a value does not fit its field (a compiler bug, not a user error).
    """
    return b"".join(_program_parts(program))


def _program_parts(program: Program) -> list[bytes]:
    """:func:`program_bytes` in pieces (their concatenation is the file), so that a large program
    can be written to disk without first being copied into one bytes object.

    Raises ``ValueError`` when a value does not fit its field (a compiler bug, not a user error).
    """
    if program.version != PROGRAM_VERSION:
        raise ValueError(
            f"program has format version {program.version}; this writer writes {PROGRAM_VERSION}"
        )
    w = _Writer()
    w.parts.append(MAGIC)
    w.u16(PROGRAM_VERSION, "version")
    w.u16(0, "flags")
    w.str(program.target, "target")
    w.str(program.model, "model")
    w.str(program.policy, "policy")
    w.u64(program.memory_words, "memory_words")
    w.u32(len(program.buffers), "buffer count")
    for b in program.buffers:
        what = f"buffer {b.name!r}"
        w.str(b.name, what)
        w.u64(b.address, f"{what} address")
        if len(b.shape) != 3:
            raise ValueError(f"{what}: shape {b.shape} is not (C, H, W)")
        for d in b.shape:
            w.u32(d, f"{what} shape")
        w.u8(b.frac, f"{what} frac")
        w.u8(b.bits, f"{what} bits")
        w.str(b.kind, f"{what} kind")
        w.str(b.root, f"{what} root")
    _io(w, program.inputs, "input")
    _io(w, program.outputs, "output")
    w.u32(len(program.steps), "step count")
    fast = _FastPasses()
    for step in program.steps:
        if isinstance(step, Pass):
            data = fast.bytes(step)
            if data is not None:
                w.parts.append(data)
                continue
            what = f"pass {step.index}"
            w.u8(_STEP_PASS, what)
            w.u32(step.index, what)
            w.str(step.kind, f"{what} kind")
            w.strs(step.layers, f"{what} layers")
            w.u64(step.macs, f"{what} macs")
            w.u32(len(step.estimate), f"{what} estimate")
            for key in sorted(step.estimate):
                w.str(key, f"{what} estimate")
                w.u64(step.estimate[key], f"{what} estimate {key!r}")
            w.words(step.config_words, f"{what} configuration words")
        elif isinstance(step, HostStep):
            what = f"host step {step.index}"
            w.u8(_STEP_HOST, what)
            w.u32(step.index, what)
            w.str(step.layer, f"{what} layer")
            w.str(step.op, f"{what} op")
            w.strs(step.srcs, f"{what} sources")
            w.str(step.dst, f"{what} destination")
            w.u64(step.ops, f"{what} ops")
        else:
            raise ValueError(f"step {step!r} is neither a Pass nor a HostStep")
    crc = 0
    for part in w.parts:  # part by part: no copy of the whole body just for its checksum
        crc = zlib.crc32(part, crc)
    w.parts.append(struct.pack("<I", crc))
    return w.parts


def write_program(program: Program, directory: str | os.PathLike, listings: bool = True) -> dict[str, Path]:
    """Write ``program.nfcp``, ``program.json`` and ``program.lst`` into ``directory`` (created if
    missing). Returns their paths keyed ``nfcp``, ``json``, ``lst``.

    With ``listings=False`` only ``program.nfcp`` is written and stale listings from an earlier
    program in the same directory are removed (``nfc disasm`` makes a listing from the file)."""
    directory = Path(directory)
    parts = _program_parts(program)  # the encoder refuses any value that outgrows its field
    texts = {}
    if listings:
        data = b"".join(parts)
        parts = [data]
        try:  # the listings come from the file as read back: a program that does not read back is refused
            loaded = parse_program(data, FILES["nfcp"])
        except NfcError as exc:
            raise NfcError(
                f"internal error: the compiled program does not decode from its own configuration words, "
                f"so it was not written: {exc}; please report this"
            ) from None
        texts = {"json": json_text(program_json(loaded)), "lst": disasm_text(loaded)}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {key: directory / name for key, name in FILES.items()}
        if not listings:
            for key in ("json", "lst"):
                paths.pop(key).unlink(missing_ok=True)
        for key, text in texts.items():
            atomic_write(paths[key], text.encode("utf-8"))
        atomic_write_with(paths["nfcp"], lambda tmp: _write_parts(tmp, parts))
    except OSError as exc:
        raise NfcError(f"{directory}: cannot write the program: {exc.strerror or exc}") from None
    return paths


def _write_parts(path: Path, parts: list[bytes]) -> None:
    """Write the pieces of a file to the new file ``path`` (as ``atomic_write`` writes its data)."""
    with open(path, "xb") as f:
        f.writelines(parts)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------
class _Truncated(Exception):
    """The data ends before the field at ``offset``."""

    def __init__(self, offset: int, what: str):
        super().__init__(what)
        self.offset = offset
        self.what = what


class _Bad(Exception):
    """A field holds a value that cannot be right."""


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data = data
        self.end = end
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise _Truncated(self.pos, what)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def u8(self, what: str) -> int:
        return self.int("B", what)

    def u16(self, what: str) -> int:
        return self.int("H", what)

    def u32(self, what: str) -> int:
        return self.int("I", what)

    def u64(self, what: str) -> int:
        return self.int("Q", what)

    def str(self, what: str) -> str:
        raw = self.take(self.u32(what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} is not valid UTF-8") from None

    def count(self, what: str, item_bytes: int) -> int:
        """A u32 count of items of at least ``item_bytes`` bytes each (checked against the data left)."""
        n = self.u32(what)
        if n * item_bytes > self.end - self.pos:
            raise _Truncated(self.pos, what)
        return n

    def strs(self, what: str) -> tuple[str, ...]:
        return tuple(self.str(what) for _ in range(self.count(what, 4)))

    def words(self, what: str) -> tuple[int, ...]:
        n = self.count(what, 8)
        return struct.unpack(f"<{n}Q", self.take(8 * n, what))


def _read_io(r: _Reader, what: str) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    items = []
    for _ in range(r.count(f"{what} count", 9)):
        name = r.str(f"{what} name")
        buffer = r.str(f"{what} buffer")
        rank = r.u8(f"{what} rank")
        items.append((name, buffer, tuple(r.u32(f"{what} dimension") for _ in range(rank))))
    return tuple(items)


def _read_body(r: _Reader, version: int, label: str) -> LoadedProgram:
    target = r.str("target")
    model = r.str("model")
    policy = r.str("policy")
    memory_words = r.u64("memory_words")
    buffers = []
    for _ in range(r.count("buffer count", 34)):
        name = r.str("buffer name")
        address = r.u64("buffer address")
        shape = (r.u32("buffer shape"), r.u32("buffer shape"), r.u32("buffer shape"))
        frac = r.u8("buffer frac")
        bits = r.u8("buffer bits")
        kind = r.str("buffer kind")
        buffers.append(BufferInfo(name, address, shape, frac, bits, kind, r.str("buffer root")))
    inputs = _read_io(r, "input")
    outputs = _read_io(r, "output")
    steps: list[tuple | HostStep] = []
    for _ in range(r.count("step count", 5)):
        start = r.pos
        kind_of_step = r.u8("step type")
        if kind_of_step == _STEP_PASS:
            index = r.u32("pass index")
            kind = r.str("pass kind")
            layers = r.strs("pass layers")
            macs = r.u64("pass macs")
            estimate = {}
            for _ in range(r.count("pass estimate", 12)):
                key = r.str("estimate key")
                estimate[key] = r.u64("estimate value")
            words = r.words("configuration words")
            steps.append((index, kind, layers, macs, estimate, words))  # decoded once the checksum holds
        elif kind_of_step == _STEP_HOST:
            index = r.u32("host step index")
            layer = r.str("host step layer")
            op = r.str("host step op")
            srcs = r.strs("host step sources")
            dst = r.str("host step destination")
            steps.append(HostStep(index, layer, op, srcs, dst, r.u64("host step ops")))
        else:
            raise _Bad(f"step {len(steps)} at byte {start} has unknown type {kind_of_step}")
    return LoadedProgram(
        version, target, model, policy, memory_words, tuple(buffers), inputs, outputs, tuple(steps), label
    )


def _decoded(step: tuple | HostStep) -> LoadedPass | HostStep:
    """A pass read by :func:`_read_body` with its words decoded (``_Bad`` when they are malformed)."""
    if isinstance(step, HostStep):
        return step
    index, kind, layers, macs, estimate, words = step
    try:
        decoded = decode_pass(words)
    except ValueError as exc:
        raise _Bad(f"pass {index}: {exc}") from None
    if (decoded.index, decoded.kind) != (index, kind):
        raise _Bad(f"pass {index} ({kind}): its PASS word says pass {decoded.index} ({decoded.kind})")
    return LoadedPass(index, kind, layers, macs, estimate, words, decoded)


def parse_program(data: bytes, label: str = "<program>") -> LoadedProgram:
    """Read the program file bytes ``data``; ``label`` names the file in error messages."""
    if not data:
        raise NfcError(f"{label}: empty file, not an nfc program; {_COMPILE_HINT}")
    if len(data) < 4 and MAGIC.startswith(bytes(data)):
        raise NfcError(f"{label}: truncated: {len(data)} bytes, too short for the header; {_RECOMPILE_HINT}")
    if data[:4] != MAGIC:
        raise NfcError(f"{label}: not an nfc program (bad magic {bytes(data[:4])!r}); {_COMPILE_HINT}")
    if len(data) < 8:
        raise NfcError(f"{label}: truncated: {len(data)} bytes, too short for the header; {_RECOMPILE_HINT}")
    version, flags = struct.unpack_from("<HH", data, 4)
    if version > PROGRAM_VERSION:
        raise NfcError(
            f"{label}: program format version {version} is newer than this nfc reads "
            f"({PROGRAM_VERSION}); upgrade nfc"
        )
    if version < PROGRAM_VERSION:
        raise NfcError(
            f"{label}: program format version {version} is older than this nfc reads "
            f"({PROGRAM_VERSION}); {_RECOMPILE_HINT}"
        )
    if flags:
        raise NfcError(
            f"{label}: program uses format flags 0x{flags:04x} this nfc does not know; upgrade nfc"
        )
    body_end = len(data) - 4
    stored = computed = 0
    if body_end >= 8:
        stored = struct.unpack_from("<I", data, body_end)[0]
        computed = zlib.crc32(memoryview(data)[:body_end])
    crc_ok = body_end >= 8 and stored == computed
    r = _Reader(data, max(body_end, 8))
    r.pos = 8
    try:
        program = _read_body(r, version, label)
    except _Truncated as exc:
        if crc_ok:
            raise NfcError(
                f"{label}: malformed program: the {exc.what} at byte {exc.offset} runs past the end "
                f"of the data; {_RECOMPILE_HINT}"
            ) from None
        raise NfcError(
            f"{label}: truncated: the file ends inside the {exc.what} (byte {exc.offset} of {len(data)}) "
            f"and its checksum does not match: it was cut short (an interrupted write?) or damaged; "
            f"{_RECOMPILE_HINT}"
        ) from None
    except _Bad as exc:
        if not crc_ok:
            raise NfcError(_crc_message(label, stored, computed)) from None
        raise NfcError(f"{label}: malformed program: {exc}; {_RECOMPILE_HINT}") from None
    if not crc_ok:
        raise NfcError(_crc_message(label, stored, computed))
    if r.pos != body_end:
        raise NfcError(f"{label}: {body_end - r.pos} unexpected bytes after the last step; {_RECOMPILE_HINT}")
    try:
        return replace(program, steps=tuple(_decoded(s) for s in program.steps))
    except _Bad as exc:
        raise NfcError(f"{label}: malformed program: {exc}; {_RECOMPILE_HINT}") from None


def _crc_message(label: str, stored: int, computed: int) -> str:
    return (
        f"{label}: corrupt: checksum 0x{computed:08x} does not match the stored 0x{stored:08x}; "
        f"{_RECOMPILE_HINT}"
    )


def as_loaded(program: Program | LoadedProgram) -> LoadedProgram:
    """``program`` as its file reads back (a compiled :class:`Program` is encoded and decoded, so
    executors see only what the configuration words say); a loaded program is returned as it is."""
    return parse_program(program_bytes(program)) if isinstance(program, Program) else program


def read_program(path: str | os.PathLike) -> LoadedProgram:
    """Read a program file, or the ``program.nfcp`` of a directory (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if not (path / FILES["nfcp"]).is_file():
            raise NfcError(f"{path}: no {FILES['nfcp']} in this directory; {_COMPILE_HINT}")
        path = path / FILES["nfcp"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NfcError(f"{path}: no such file; {_COMPILE_HINT}") from None
    except OSError as exc:
        raise NfcError(f"{path}: cannot read the program: {exc.strerror or exc}") from None
    return parse_program(data, str(path))


# ---------------------------------------------------------------------------------------------------
# listings
# ---------------------------------------------------------------------------------------------------
def _hex(w: int) -> str:
    return f"0x{w:016x}"


def _fields(obj) -> dict:
    """A flat decoded unit as a dict in field order (tuples stay tuples: JSON writes them as lists)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def program_json(loaded: LoadedProgram) -> dict:
    """The machine-readable listing (what ``program.json`` holds), keys in a fixed order."""
    steps = []
    for s in loaded.steps:
        if isinstance(s, LoadedPass):
            d = s.decoded
            steps.append(
                {
                    "type": "pass",
                    "index": s.index,
                    "kind": s.kind,
                    "layers": list(s.layers),
                    "macs": s.macs,
                    "estimate": {k: s.estimate[k] for k in sorted(s.estimate)},
                    "rate": list(d.rate),
                    "beats": d.beats,
                    "streams": [_fields(u) for u in d.streams],
                    "convs": [_fields(u) for u in d.convs],
                    "maps": [_fields(u) for u in d.maps],
                    "alus": [_fields(u) for u in d.alus],
                    **({"pools": [_fields(u) for u in d.pools]} if d.pools else {}),
                    "words": [_hex(w) for w in s.words],
                }
            )
        else:
            steps.append(
                {
                    "type": "host",
                    "index": s.index,
                    "layer": s.layer,
                    "op": s.op,
                    "srcs": list(s.srcs),
                    "dst": s.dst,
                    "ops": s.ops,
                }
            )
    return {
        "format": "nfc-program",
        "version": loaded.version,
        "target": loaded.target,
        "model": loaded.model,
        "policy": loaded.policy,
        "memory_words": loaded.memory_words,
        "buffers": [
            {
                "name": b.name,
                "address": b.address,
                "shape": list(b.shape),
                "frac": b.frac,
                "bits": b.bits,
                "kind": b.kind,
                "root": b.root,
            }
            for b in loaded.buffers
        ],
        "inputs": [{"name": n, "buffer": b, "shape": list(d)} for n, b, d in loaded.inputs],
        "outputs": [{"name": n, "buffer": b, "shape": list(d)} for n, b, d in loaded.outputs],
        "steps": steps,
    }


def json_text(doc: dict) -> str:
    """``doc`` (from :func:`program_json`) as JSON text: one top-level key per line and one list
    element (a buffer, a step, ...) per line, so listings diff well and large programs dump fast."""
    lines = []
    for key, value in doc.items():
        name = json.dumps(key)
        if isinstance(value, list) and value:
            items = ",\n".join("  " + json.dumps(v, separators=(", ", ": ")) for v in value)
            lines.append(f" {name}: [\n{items}\n ]")
        else:
            lines.append(f" {name}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _dims(d: tuple[int, ...]) -> str:
    return "x".join(map(str, d)) if d else "scalar"


def disasm_text(loaded: LoadedProgram) -> str:
    """The text listing: header, buffer table, then every step with one line per configuration word
    (``index  opcode a b c arg  decoded text``)."""
    passes = loaded.passes
    n_words = sum(len(p.words) for p in passes)
    out = [
        f"nfc program (format version {loaded.version})",
        f"model:   {loaded.model}",
        f"target:  {loaded.target}",
        f"policy:  {loaded.policy}",
        f"memory:  {loaded.memory_words} words",
        f"steps:   {len(loaded.steps)} ({len(passes)} passes, {len(loaded.steps) - len(passes)} host), "
        f"{n_words} configuration words",
        "",
        "buffers:",
    ]
    rows = [
        [
            b.name,
            str(b.address),
            str(b.address + b.shape[0] * b.shape[1] * b.shape[2]),
            _dims(b.shape),
            f"Q{b.bits - b.frac}.{b.frac}",
            b.kind + (f" of {b.root}" if b.root else ""),
        ]
        for b in loaded.buffers
    ]
    headers = ["name", "address", "end", "shape (CxHxW)", "format", "kind"]
    out += ["  " + x for x in table(headers, rows, frozenset({1, 2}))]
    out.append("")
    for what, items in (("inputs", loaded.inputs), ("outputs", loaded.outputs)):
        out.append(f"{what}:")
        out += [f"  {name}: buffer {buf}, shape {_dims(dims)}" for name, buf, dims in items]
    for s in loaded.steps:
        out.append("")
        if isinstance(s, HostStep):
            out.append(
                f"host {s.index}: {s.op} {s.dst} <- {', '.join(s.srcs)}  layer: {s.layer}  ops={s.ops}"
            )
            continue
        cycles = s.estimate.get("total")
        tail = f"  cycles~{cycles}" if cycles is not None else ""
        out.append(f"pass {s.index} ({s.kind}) layers: {', '.join(s.layers)}  macs={s.macs}{tail}")
        for i, w in enumerate(s.words):
            name, a, b, c, arg = split_word(w)
            text = format_fields(name, a, b, c, arg, word=w)
            out.append(f"  {i:04d}  {w >> 56:02x} {a:02x} {b:02x} {c:02x} {arg:08x}  {text}")
    return "\n".join(out) + "\n"
