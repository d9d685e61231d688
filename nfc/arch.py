"""The accelerator description: one frozen :class:`ArchConfig` read by compiler, simulator and RTL.

A target is a TOML file. The package ships the targets of :data:`BUILTIN_TARGETS` (see
``nfc/targets/``); any other file can be given by path. Every field is declared once below, with
its type, allowed range and meaning; loading checks every field and reports the first problem as
``<file>: <section>.<key> must be <rule>, not <value>``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nfc.errors import TargetError
from nfc.fpga import FpgaConfig, fpga_from_dict

__all__ = ["ArchConfig", "load_target", "list_targets", "BUILTIN_TARGETS"]

BUILTIN_TARGETS = ("virtex6", "asic45", "tiny", "mid", "zynq7020", "ecp5", "virtex6_packed")


def _f(lo: float, hi: float, doc: str, **kw: Any) -> Any:
    """A config field with an inclusive allowed range and a one-line meaning."""
    return field(metadata={"lo": lo, "hi": hi, "doc": doc}, **kw)


@dataclass(frozen=True, slots=True)
class GridConfig:
    """Shape and clock of the tile grid."""

    rows: int = _f(1, 15, "tile rows")
    cols: int = _f(1, 15, "tile columns")
    clock_mhz: float = _f(1, 2000, "grid clock in MHz")


@dataclass(frozen=True, slots=True)
class TileConfig:
    """What every processing tile holds."""

    convolver_size: int = _f(1, 15, "K: each convolver is a K x K MAC array")
    convolvers: int = _f(0, 4, "convolvers per tile")
    mappers: int = _f(0, 4, "piecewise-linear mappers per tile")
    mapper_segments: int = _f(2, 64, "segments of each piecewise-linear mapper")
    alus: int = _f(0, 4, "streaming ALUs per tile (ADD/SUB/MUL/MAX/MIN/accumulate)")
    fifo_depth: int = _f(2, 65536, "words in each operator FIFO")
    line_buffer_words: int = _f(4, 65536, "longest image row (in words) a convolver's line buffers hold")
    router_latency: int = _f(0, 16, "cycles for one router hop")
    poolers: int = _f(
        0,
        1,
        "pooling units per tile: non-overlapping p x p max or average pooling of the tile's output "
        "(optional, default 0: pooling then runs on a convolver)",
        default=0,
    )
    lanes: int = _f(
        1,
        2,
        "kernels a convolver packs into its K x K array over one shared input window, each making its "
        "own output map (optional, default 1 as in NeuFlow; 2: two kernels of at most packed_size x "
        "packed_size)",
        default=1,
    )
    acc_words: int = _f(
        0,
        65535,
        "words of each lane's accumulation buffer: a chain's partial sums kept on the tile between "
        "passes instead of in memory (optional, default 0: none, as in NeuFlow)",
        default=0,
    )


@dataclass(frozen=True, slots=True)
class NumericsConfig:
    """The word format of every stream and the convolver's accumulator."""

    word_bits: int = _f(4, 16, "bits of a stream word (signed fixed point; configuration fields hold 16)")
    frac_bits: int = _f(0, 31, "default fraction bits (Q(word_bits-frac_bits).frac_bits)")
    accumulator_bits: int = _f(8, 64, "bits of the MAC accumulator before rounding and saturation")


@dataclass(frozen=True, slots=True)
class IOConfig:
    """Global grid I/O ports: DMA channels between external memory and the grid."""

    ports: int = _f(1, 64, "global I/O ports")
    max_read_ports: int = _f(1, 64, "ports that may stream from memory at once")
    max_write_ports: int = _f(1, 64, "ports that may stream to memory at once")


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """External memory as the DMA sees it."""

    read_gbytes_per_s: float = _f(0.01, 1000, "sustained read bandwidth in GB/s (1e9 bytes/s)")
    write_gbytes_per_s: float = _f(0.01, 1000, "sustained write bandwidth in GB/s")
    shared: bool = field(metadata={"doc": "reads and writes share one bus (read figure is the total)"})
    latency_cycles: int = _f(0, 1000, "grid cycles from a read request to its first word")


@dataclass(frozen=True, slots=True)
class ConfigBusConfig:
    """The runtime configuration bus from the control CPU to the grid."""

    word_bits: int = _f(8, 128, "bits of a configuration word")
    cycles_per_word: int = _f(1, 1000, "grid cycles to deliver one configuration word")


@dataclass(frozen=True, slots=True)
class PowerConfig:
    """Coefficients of the power model (``sim/power.py``, derivation in ``docs/power.md``).

    Energy = ``static_w`` x run time + the sum over event kinds of count x energy per event.
    The per-event energies are in picojoules; ``static_w`` is charged for every cycle, busy or not.
    """

    static_w: float = _f(
        0, 1000, "W drawn whether busy or not: leakage, clock trees, memory interface and DRAM idle"
    )
    pj_per_mac: float = _f(0, 1_000_000, "pJ per convolver multiply-accumulate")
    pj_per_mapper_op: float = _f(0, 1_000_000, "pJ per word through a piecewise-linear mapper")
    pj_per_alu_op: float = _f(0, 1_000_000, "pJ per word out of a streaming ALU")
    pj_per_fifo_word: float = _f(
        0, 1_000_000, "pJ per word pushed into (and later popped from) an operator FIFO"
    )
    pj_per_router_hop: float = _f(0, 1_000_000, "pJ per word crossing one router link")
    pj_per_dram_byte: float = _f(0, 1_000_000, "pJ per byte moved between external memory and the grid")
    pj_per_config_word: float = _f(0, 1_000_000, "pJ per configuration word sent over the configuration bus")


_SECTIONS = {
    "grid": GridConfig,
    "tile": TileConfig,
    "numerics": NumericsConfig,
    "io": IOConfig,
    "memory": MemoryConfig,
    "config_bus": ConfigBusConfig,
    "power": PowerConfig,
}


@dataclass(frozen=True, slots=True)
class ArchConfig:
    """A concrete accelerator. Immutable; build one with :func:`load_target`.

    Attributes
    ----------
    name, description : str
        Target name (as given to ``--target``) and a one-line description.
    grid, tile, numerics, io, memory, config_bus, power
        The sections of the target file, each a frozen dataclass. Every section is required.
    fpga : FpgaConfig or None
        The optional ``[fpga]`` section: the FPGA part (and board) the target is built for
        (:mod:`nfc.fpga`). ``None`` for targets that are not meant for an FPGA.
    """

    name: str
    description: str
    grid: GridConfig
    tile: TileConfig
    numerics: NumericsConfig
    io: IOConfig
    memory: MemoryConfig
    config_bus: ConfigBusConfig
    power: PowerConfig
    source: str = ""
    fpga: FpgaConfig | None = None

    # -- derived figures --------------------------------------------------------------------------
    @property
    def tiles(self) -> int:
        return self.grid.rows * self.grid.cols

    @property
    def convolvers(self) -> int:
        return self.tiles * self.tile.convolvers

    @property
    def mappers(self) -> int:
        return self.tiles * self.tile.mappers

    @property
    def alus(self) -> int:
        return self.tiles * self.tile.alus

    @property
    def macs(self) -> int:
        """MAC units in all convolvers."""
        return self.convolvers * self.tile.convolver_size**2

    @property
    def packed_size(self) -> int:
        """Largest kernel side ``m`` that packs: ``lanes`` kernels of ``m x m`` taps fit the K x K
        array (``lanes * m * m <= K * K``); K when a convolver does not pack."""
        k, lanes = self.tile.convolver_size, self.tile.lanes
        if lanes == 1:
            return k
        return math.isqrt(k * k // lanes)

    @property
    def clock_hz(self) -> float:
        return self.grid.clock_mhz * 1e6

    @property
    def peak_gops(self) -> float:
        """Peak operations per second / 1e9: 2 ops per MAC, mapper and ALU per cycle (luaFlow's formula)."""
        return 2 * (self.macs + self.mappers + self.alus) * self.clock_hz / 1e9

    @property
    def word_bytes(self) -> int:
        return math.ceil(self.numerics.word_bits / 8)

    @property
    def total_gbytes_per_s(self) -> float:
        """Bandwidth of reads and writes together."""
        m = self.memory
        return m.read_gbytes_per_s if m.shared else m.read_gbytes_per_s + m.write_gbytes_per_s

    def to_dict(self) -> dict[str, Any]:
        """All fields and the derived figures, for ``--json`` output."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for section in _SECTIONS:
            out[section] = dataclasses.asdict(getattr(self, section))
        if self.fpga is not None:
            out["fpga"] = dataclasses.asdict(self.fpga)
        out["derived"] = {
            "tiles": self.tiles,
            "convolvers": self.convolvers,
            "mappers": self.mappers,
            "alus": self.alus,
            "macs": self.macs,
            "peak_gops": round(self.peak_gops, 3),
            "total_gbytes_per_s": round(self.total_gbytes_per_s, 3),
        }
        return out


def _check_value(where: str, f: dataclasses.Field, value: Any) -> Any:
    """Type- and range-check one field; return the value converted to the field's type."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if kind == "bool":
        if not isinstance(value, bool):
            raise TargetError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TargetError(f"{where} must be a number, not {value!r}")
    if kind == "int" and not float(value).is_integer():
        raise TargetError(f"{where} must be an integer, not {value!r}")
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    if not lo <= value <= hi:
        raise TargetError(f"{where} must be between {lo} and {hi} ({f.metadata['doc']}), not {value!r}")
    return int(value) if kind == "int" else float(value)


def _section(label: str, name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise TargetError(f"{label}: [{name}] must be a table, not {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise TargetError(
            f"{label}: unknown key {name}.{unknown[0]}; the keys of [{name}] are: {', '.join(fields)}"
        )
    # a field with a default may be left out
    missing = [k for k, f in fields.items() if k not in table and f.default is dataclasses.MISSING]
    if missing:
        doc = fields[missing[0]].metadata["doc"]
        raise TargetError(f"{label}: missing key {name}.{missing[0]} ({doc})")
    values = {k: _check_value(f"{label}: {name}.{k}", fields[k], table[k]) for k in fields if k in table}
    return cls(**values)


def arch_from_dict(data: dict[str, Any], label: str = "<target>") -> ArchConfig:
    """Validate a parsed target file and build the :class:`ArchConfig`."""
    unknown = sorted(set(data) - set(_SECTIONS) - {"name", "description", "fpga"})
    if unknown:
        raise TargetError(
            f"{label}: unknown section or key {unknown[0]!r}; a target has name, description, "
            f"the sections {', '.join('[' + s + ']' for s in _SECTIONS)} and optionally [fpga]"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TargetError(f"{label}: name must be a non-empty string, not {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise TargetError(f"{label}: description must be a string, not {description!r}")
    sections = {}
    for sec, cls in _SECTIONS.items():
        if sec not in data:
            raise TargetError(f"{label}: missing section [{sec}]")
        sections[sec] = _section(label, sec, cls, data[sec])
    fpga = fpga_from_dict(data["fpga"], label) if "fpga" in data else None
    cfg = ArchConfig(name=name, description=description, source=label, fpga=fpga, **sections)
    _check_consistency(cfg, label)
    return cfg


def _check_consistency(cfg: ArchConfig, label: str) -> None:
    """Rules that involve several fields."""
    n, io = cfg.numerics, cfg.io
    if n.frac_bits >= n.word_bits:
        raise TargetError(
            f"{label}: numerics.frac_bits must be less than numerics.word_bits ({n.word_bits}), "
            f"not {n.frac_bits}"
        )
    if n.accumulator_bits < 2 * n.word_bits:
        raise TargetError(
            f"{label}: numerics.accumulator_bits must be at least 2 * word_bits ({2 * n.word_bits}) "
            f"to hold a full product, not {n.accumulator_bits}"
        )
    for key in ("max_read_ports", "max_write_ports"):
        if getattr(io, key) > io.ports:
            raise TargetError(
                f"{label}: io.{key} must be at most io.ports ({io.ports}), not {getattr(io, key)}"
            )
    if cfg.convolvers == 0:
        raise TargetError(f"{label}: tile.convolvers must be at least 1 somewhere on the grid, not 0")
    if cfg.tile.lanes > 1 and cfg.tile.convolver_size < 2:
        raise TargetError(
            f"{label}: a convolver packs {cfg.tile.lanes} kernels (tile.lanes) only if it holds at least "
            f"two taps a side; tile.convolver_size is {cfg.tile.convolver_size}"
        )
    if cfg.tile.line_buffer_words < cfg.tile.convolver_size:
        raise TargetError(
            f"{label}: tile.line_buffer_words must be at least tile.convolver_size "
            f"({cfg.tile.convolver_size}), not {cfg.tile.line_buffer_words}"
        )


def list_targets() -> tuple[str, ...]:
    """Names of the targets shipped with nfc."""
    return BUILTIN_TARGETS


def load_target(name_or_path: str | Path) -> ArchConfig:
    """Load a shipped target by name (``virtex6``) or any target file by path."""
    text_name = str(name_or_path)
    if text_name in BUILTIN_TARGETS:
        text = resources.files("nfc").joinpath("targets", f"{text_name}.toml").read_text(encoding="utf-8")
        label = f"{text_name}.toml"
    else:
        path = Path(text_name)
        if not path.is_file():
            raise TargetError(
                f"unknown target {text_name!r}: give one of {', '.join(BUILTIN_TARGETS)} "
                "or the path of a target .toml file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"{path}: cannot read target file: {exc}") from None
        label = path.name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{label}: not valid TOML: {exc}") from None
    return arch_from_dict(data, label)
