"""Verilog emission: an Amaranth component as plain, deterministic Verilog, and the files of `nfc rtl`.

:func:`emit_verilog` converts through Amaranth's own back end (``amaranth.back.verilog``, Yosys
shipped as WebAssembly) with no source locations and with every ``(* ... *)`` attribute removed, so
the text carries no machine paths and pyverilog can parse it. :func:`write_rtl` writes a component's
Verilog, its manifest (:mod:`nfc.rtl.manifest`) and a simulator file list into a directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nfc.errors import NfcError
from nfc.rtl.manifest import manifest

__all__ = ["RtlFiles", "emit_verilog", "strip_attributes", "top_name", "write_rtl"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


_ATTRIBUTE = r'\(\*(?!\))(?:[^"*]|"(?:[^"\\]|\\.)*"|\*(?!\)))*\*\)'
# Strings and comments are matched first so that nothing inside them is taken for an attribute; an
# attribute alone on its line is matched with the line.
_TOKENS = re.compile(
    rf"(?P<line>^[ \t]*{_ATTRIBUTE}[ \t]*\n)"
    r'|"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/'
    rf"|(?P<attr>{_ATTRIBUTE}[ \t]*)",
    re.S | re.M,
)


def strip_attributes(verilog_text: str) -> str:
    """Remove every Verilog attribute (``(* key = value *)``) from ``verilog_text``.

    Strings and comments are copied untouched (an attribute-like ``(*`` inside them stays), as is the
    event control ``@(*)``. An attribute alone on its line takes the line with it.
    """
    return _TOKENS.sub(lambda m: "" if m.lastgroup in ("line", "attr") else m.group(0), verilog_text)


def emit_verilog(component, name: str) -> str:
    """The Verilog of an Amaranth ``wiring.Component`` as text, top module named ``name``.

    Every member of the component's signature becomes a port, named by its path joined with
    ``__`` (a stream member ``i`` gives ``i__payload``, ``i__valid``, ``i__ready``), plus ``clk`` and
    ``rst`` (synchronous reset, active high) when the design has synchronous logic. Submodules
    become modules named ``<name>.<path>`` (escaped identifiers). The text has no source locations
    and no attributes, ends with a newline, and is the same byte for byte for the same design.

    Raises
    ------
    TypeError
        ``component`` is not a ``wiring.Component``.
    ValueError
        ``name`` is not a plain Verilog identifier.
    """
    from amaranth.back import verilog
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        raise TypeError(f"component must be an amaranth.lib.wiring.Component, not {component!r}")
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"name must be a Verilog identifier (a letter or '_', then letters, digits, '_', '$'), not {name!r}"
        )
    text = verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
    text = strip_attributes(text)
    return text if text.endswith("\n") else text + "\n"


def top_name(target_name: str) -> str:
    """The top module's (and the Verilog file's) name for a target: ``nfc_<target>``, every character
    of the target's name other than a letter, digit or ``_`` replaced by ``_``."""
    return "nfc_" + re.sub(r"[^A-Za-z0-9_]", "_", target_name)


@dataclass(frozen=True, slots=True)
class RtlFiles:
    """What :func:`write_rtl` wrote.

    Attributes
    ----------
    verilog, manifest, filelist : Path
        ``DIR/nfc_<target>.v``, ``DIR/manifest.json`` and ``DIR/files.f``.
    data : dict
        The manifest (as written to ``manifest.json``).
    """

    verilog: Path
    manifest: Path
    filelist: Path
    data: dict[str, Any]


def write_rtl(component, arch, out_dir, progress=None) -> RtlFiles:
    """Emit ``component`` as the Verilog of target ``arch`` and write it with its manifest.

    Writes, each atomically (a temporary name, then a rename), into ``out_dir`` (created if needed):
    ``nfc_<target>.v`` (top module ``nfc_<target>``, see :func:`top_name`), ``files.f`` (the Verilog
    files for simulators, one a line, relative to ``out_dir``: run the simulator there, or use
    ``verilator -F``) and ``manifest.json`` (:func:`nfc.rtl.manifest.manifest`, written last). The
    same component and target give byte-identical files. ``progress(message)``, when given, hears
    of each stage (conversion to Verilog, the parse back) with its time.

    Raises
    ------
    NfcError
        ``out_dir`` is not a writable directory, or the Verilog cannot be parsed back.
    """
    from nfc.files import atomic_write

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NfcError(f"{out}: exists and is not a directory; give a directory for the RTL")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NfcError(
            f"{out}: cannot create the directory ({exc.strerror or exc}); give a writable directory"
        ) from None
    import time

    top = top_name(arch.name)
    say = progress or (lambda message: None)
    start = time.monotonic()
    say(f"elaborating {top} and converting it to Verilog")
    text = emit_verilog(component, top)
    middle = time.monotonic()
    say(f"{text.count(chr(10))} lines of Verilog in {middle - start:.1f} s; parsing them back with pyverilog")
    data = manifest(text, top, arch.name, verilog_file=f"{top}.v")
    say(f"parsed in {time.monotonic() - middle:.1f} s")
    files = RtlFiles(out / f"{top}.v", out / "manifest.json", out / "files.f", data)
    try:
        atomic_write(files.verilog, text)
        atomic_write(files.filelist, f"{top}.v\n")
        atomic_write(files.manifest, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise NfcError(
            f"{out}: cannot write the RTL there ({exc.strerror or exc}); give a writable directory"
        ) from None
    return files
