"""FPGA parts nfc knows: capacities, tool names and the per-resource power coefficients.

A target that is meant for an FPGA names its part in an ``[fpga]`` section::

    [fpga]
    part = "xc6vlx240t-1ff1156"   # as the vendor tools spell it: device, speed grade, package
    board = "ML605"               # for the documentation and the project files; optional

:data:`PARTS` holds what nfc knows of each part: the family (which decides the vendor flow and the
Yosys synthesis command), the device, package and speed grade as the vendor tools want them, and
the capacities the fit check compares a synthesis estimate against. Capacities come from the
vendors' product tables (Virtex-6 DS150, 7 Series DS180/DS190, ECP5 DS1044).

Resource-based power (:func:`resource_power`) is a second, independent estimate beside the
event-based model of ``sim/power.py``: the part's static power plus, per used resource, a dynamic
coefficient in microwatts per MHz at the stated activity. Every coefficient is a model
assumption of nfc, stated and justified in ``docs/fpga.md``; none is a vendor figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nfc.errors import TargetError

__all__ = [
    "FpgaConfig",
    "Part",
    "PARTS",
    "RESOURCES",
    "part",
    "fpga_from_dict",
    "read_resources",
    "resource_power",
]

#: The resources a fit check counts, in report order.
RESOURCES = ("lut", "ff", "dsp", "bram")


@dataclass(frozen=True, slots=True)
class Part:
    """One FPGA part.

    Attributes
    ----------
    name : str
        The part as ``[fpga] part`` gives it (lower case).
    family : str
        ``virtex6``, ``zynq7``, ``artix7`` or ``ecp5``.
    vendor_family : str
        The family as the vendor tool spells it (ISE's ``Virtex6``; Vivado needs only the part).
    device, package, speed : str
        The three fields of an ISE project, or nextpnr's ``--85k``-style size, package and speed.
    yosys : str
        The Yosys synthesis command for the family.
    flows : tuple of str
        The vendor project flows (``nfc rtl --flow``) that support the family; ``fusesoc`` works
        for every part.
    capacity : dict
        Available ``lut``, ``ff``, ``dsp`` and ``bram`` (:data:`RESOURCES`).
    units : dict
        What one unit of each resource is (``"LUT6"``, ``"DSP48E1"``, ``"RAMB36E1"``...).
    static_w : float
        Static power of the part at 25 C junction, a model assumption (``docs/fpga.md``).
    uw_per_mhz : dict
        Dynamic power of one used resource in microwatts per MHz, at the activity in ``docs/fpga.md``.
    """

    name: str
    family: str
    vendor_family: str
    device: str
    package: str
    speed: str
    yosys: str
    flows: tuple[str, ...]
    capacity: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    static_w: float = 0.0
    uw_per_mhz: dict[str, float] = field(default_factory=dict)


_XILINX_UNITS = {"lut": "LUT6", "ff": "flip-flop", "dsp": "DSP48E1", "bram": "RAMB36E1 (36 kb)"}
# Dynamic coefficients, microwatts per MHz per used resource (docs/fpga.md, "Resource-based power").
_V6_UW = {"lut": 0.12, "ff": 0.03, "dsp": 12.0, "bram": 40.0}
_7S_UW = {"lut": 0.09, "ff": 0.02, "dsp": 9.0, "bram": 30.0}
_ECP5_UW = {"lut": 0.10, "ff": 0.03, "dsp": 10.0, "bram": 25.0}

PARTS: dict[str, Part] = {
    p.name: p
    for p in (
        Part(
            "xc6vlx240t-1ff1156",
            "virtex6",
            "Virtex6",
            "xc6vlx240t",
            "ff1156",
            "-1",
            "synth_xilinx -family xc6v -flatten",
            ("ise",),
            {"lut": 150_720, "ff": 301_440, "dsp": 768, "bram": 416},
            _XILINX_UNITS,
            1.5,
            _V6_UW,
        ),
        Part(
            "xc7z020clg400-1",
            "zynq7",
            "Zynq",
            "xc7z020",
            "clg400",
            "-1",
            "synth_xilinx -family xc7 -flatten",
            ("vivado",),
            {"lut": 53_200, "ff": 106_400, "dsp": 220, "bram": 140},
            _XILINX_UNITS,
            0.15,
            _7S_UW,
        ),
        Part(
            "xc7a200tsbg484-1",
            "artix7",
            "Artix7",
            "xc7a200t",
            "sbg484",
            "-1",
            "synth_xilinx -family xc7 -flatten",
            ("vivado",),
            {"lut": 134_600, "ff": 269_200, "dsp": 740, "bram": 365},
            _XILINX_UNITS,
            0.35,
            _7S_UW,
        ),
        Part(
            "lfe5u-85f-6bg381c",
            "ecp5",
            "ECP5U",
            "85k",
            "CABGA381",
            "6",
            "synth_ecp5",
            (),
            {"lut": 83_640, "ff": 83_640, "dsp": 156, "bram": 208},
            {"lut": "LUT4", "ff": "flip-flop", "dsp": "MULT18X18D", "bram": "DP16KD (18 kb)"},
            0.2,
            _ECP5_UW,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class FpgaConfig:
    """A target's ``[fpga]`` section: the part it is built for and, optionally, the board."""

    part: str
    board: str = ""

    @property
    def info(self) -> Part:
        return PARTS[self.part]


def part(name: str) -> Part:
    """The :class:`Part` called ``name`` (case-insensitive).

    Raises
    ------
    TargetError
        nfc does not know the part; the message lists the parts it knows.
    """
    key = name.strip().lower()
    if key not in PARTS:
        raise TargetError(f"unknown FPGA part {name!r}; nfc knows: {', '.join(PARTS)}")
    return PARTS[key]


def fpga_from_dict(table: Any, label: str) -> FpgaConfig:
    """Validate a target file's ``[fpga]`` table."""
    if not isinstance(table, dict):
        raise TargetError(f"{label}: [fpga] must be a table, not {table!r}")
    unknown = sorted(set(table) - {"part", "board"})
    if unknown:
        raise TargetError(f"{label}: unknown key fpga.{unknown[0]}; the keys of [fpga] are: part, board")
    name = table.get("part")
    if not isinstance(name, str):
        raise TargetError(
            f"{label}: missing key fpga.part (the FPGA part, one of: {', '.join(PARTS)})"
            if name is None
            else f"{label}: fpga.part must be a string, not {name!r}"
        )
    if name.strip().lower() not in PARTS:
        raise TargetError(f"{label}: fpga.part must be one of {', '.join(PARTS)}, not {name!r}")
    board = table.get("board", "")
    if not isinstance(board, str):
        raise TargetError(f"{label}: fpga.board must be a string, not {board!r}")
    return FpgaConfig(part=name.strip().lower(), board=board)


def resource_power(p: Part, used: dict[str, int], clock_mhz: float, duty: float = 1.0) -> dict[str, Any]:
    """Resource-based power of a design using ``used`` resources of part ``p`` at ``clock_mhz``.

    ``P = static_w + clock_mhz x sum(used[r] x uw_per_mhz[r]) x 1e-6 x duty``. ``duty`` is the
    fraction of cycles the datapath is busy; the coefficients hold the activity of a busy cycle
    (``docs/fpga.md``). Returns the total and the dynamic part of each resource, in watts.
    """
    if not 0 <= duty <= 1:
        raise ValueError(f"duty must be between 0 and 1, not {duty!r}")
    dynamic = {r: used.get(r, 0) * p.uw_per_mhz[r] * clock_mhz * 1e-6 * duty for r in RESOURCES}
    return {
        "static_w": p.static_w,
        "dynamic_w": dynamic,
        "total_w": p.static_w + sum(dynamic.values()),
        "clock_mhz": clock_mhz,
        "duty": duty,
    }


def read_resources(path, target: str) -> dict[str, Any]:
    """The ``resources.json`` of ``nfc rtl --synth`` at ``path`` (a file or its directory), checked
    to be for ``target``: ``{"part": Part, "used": {resource: count}, "source": path}``.

    Raises
    ------
    TargetError
        The file is missing, is not such a report, or is for another target.
    """
    import json
    from pathlib import Path

    p = Path(path)
    p = p / "resources.json" if p.is_dir() else p
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"--resources {p}: no such file; run nfc rtl --synth -o DIR and give DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TargetError(f"--resources {p}: not a resource report ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != "nfc-resources":
        raise TargetError(f"--resources {p}: not a resource report of nfc rtl --synth")
    if data.get("target") != target:
        raise TargetError(
            f"--resources {p}: the report is for target {data.get('target')!r}, not {target!r}; "
            f"synthesize {target} with nfc rtl --target {target} --synth"
        )
    return {
        "part": part(str(data["part"])),
        "used": {r: data["resources"][r]["used"] for r in RESOURCES},
        "source": str(p),
    }
