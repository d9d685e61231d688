"""The manifest of emitted Verilog: its modules and their ports, read back by parsing the text.

The manifest is obtained by *parsing* the Verilog that :func:`nfc.rtl.emit.emit_verilog` produced
with pyverilog, not from the Amaranth objects, so it describes what a simulator or an FPGA flow will
actually see. pyverilog preprocesses with ``iverilog -E`` and builds its parser tables on first use;
both happen in a temporary directory, never in the working directory.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from nfc.errors import NfcError

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "manifest", "parse_verilog"]

#: The ``format`` field of every manifest, and the version of its layout.
MANIFEST_FORMAT = "nfc-rtl-manifest"
MANIFEST_VERSION = 1

_DIRECTIONS = {"Input": "input", "Output": "output", "Inout": "inout"}
_STREAM_FIELDS = ("payload", "valid", "ready")


@functools.cache
def _pyverilog():
    """pyverilog's AST, parser and preprocessor modules. Importing pyverilog reads its VERSION file
    without closing it; that ResourceWarning is pyverilog's, not ours, and is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        import pyverilog  # noqa: F401
    from pyverilog.vparser import ast, parser, preprocessor

    return ast, parser, preprocessor


@functools.cache
def _parser():
    """One pyverilog parser per process: building its LALR tables takes seconds. PLY writes them to a
    temporary directory (never the working directory); the parser keeps them in memory."""
    parser = _pyverilog()[1]
    with tempfile.TemporaryDirectory(prefix="nfc-pyverilog-tables-") as tmp:
        return parser.VerilogParser(outputdir=tmp, debug=False)


def parse_verilog(verilog_text: str):
    """Parse Verilog text with pyverilog and return its AST (``pyverilog.vparser.ast.Source``).

    Raises
    ------
    NfcError
        The text is not Verilog that pyverilog can parse (the message gives pyverilog's reason,
        usually a line number), or ``iverilog`` (pyverilog's preprocessor) is missing.
    """
    _, parser, preprocessor = _pyverilog()

    iverilog = os.environ.get("PYVERILOG_IVERILOG", "iverilog")
    if shutil.which(iverilog) is None:
        raise NfcError(
            f"cannot parse the emitted Verilog: pyverilog preprocesses it with Icarus Verilog, and "
            f"{iverilog!r} is not on PATH; install Icarus Verilog (Debian: apt-get install iverilog)"
        )
    with tempfile.TemporaryDirectory(prefix="nfc-pyverilog-") as tmp:
        src, pre = Path(tmp) / "design.v", Path(tmp) / "preprocessed.v"
        src.write_text(verilog_text, encoding="utf-8")
        # pyverilog's VerilogCodeParser leaves the preprocessed file open; its two steps, done here
        preprocessor.VerilogPreprocessor([str(src)], str(pre)).preprocess()
        if not pre.is_file():
            raise NfcError(
                f"cannot parse the emitted Verilog: `{iverilog} -E` could not preprocess it (see its "
                "messages above)"
            )
        text = pre.read_text(encoding="utf-8")
    verilog_parser = _parser()
    verilog_parser.lexer.reset_lineno()
    verilog_parser.lexer.directives = []
    try:
        return verilog_parser.parse(text, debug=0)
    except parser.ParseError as exc:
        raise NfcError(f"cannot parse the emitted Verilog with pyverilog: {exc}") from None


def _unescape(name: str) -> str:
    """A Verilog escaped identifier (``\\a.b``) as the name it denotes (``a.b``)."""
    return name[1:] if name.startswith("\\") else name


def _const(node, what: str) -> int:
    """The value of a constant integer node (``15``, ``4'd15``, ``'h1f``)."""
    ast = _pyverilog()[0]

    if isinstance(node, ast.IntConst):
        text = node.value.replace("_", "").lower()
        m = re.fullmatch(r"(?:\d*)'s?([bodh])([0-9a-f]+)", text)
        if m:
            return int(m.group(2), {"b": 2, "o": 8, "d": 10, "h": 16}[m.group(1)])
        if text.isdigit():
            return int(text)
    if isinstance(node, ast.Uminus):
        return -_const(node.right, what)
    raise NfcError(f"{what} is not a constant integer ({node!r}); nfc's manifest needs constant widths")


def _width(width, what: str) -> int:
    if width is None:
        return 1
    return abs(_const(width.msb, what) - _const(width.lsb, what)) + 1


def _port_info(node, module: str) -> dict[str, Any]:
    kind = type(node).__name__
    what = f"port {node.name} of module {module}"
    return {
        "name": _unescape(node.name),
        "direction": _DIRECTIONS[kind],
        "width": _width(node.width, f"the width of {what}"),
        "signed": bool(node.signed),
    }


def _module_info(module) -> dict[str, Any]:
    """Name, ports (header order) and parameters of one ``ModuleDef``."""
    ast = _pyverilog()[0]

    name = _unescape(module.name)
    declared: dict[str, dict[str, Any]] = {}
    params: list[dict[str, Any]] = []
    header: list[str] = []
    for port in module.portlist.ports:
        if isinstance(port, ast.Ioport):  # ANSI style: the direction is in the header
            info = _port_info(port.first, name)
            declared[info["name"]] = info
            header.append(info["name"])
        else:
            header.append(_unescape(port.name))
    items = list(module.paramlist.params) if module.paramlist is not None else []
    items += [item for item in module.items if isinstance(item, ast.Decl)]
    for item in items:
        decls = item.list if isinstance(item, ast.Decl) else [item]
        for d in decls:
            if isinstance(d, ast.Input | ast.Output | ast.Inout):
                info = _port_info(d, name)
                declared[info["name"]] = info
            elif isinstance(d, ast.Parameter) and not isinstance(d, ast.Supply):  # and Localparam
                try:
                    value: int | str = _const(d.value.var, f"parameter {d.name}")
                except NfcError:
                    value = repr(d.value.var)
                params.append(
                    {
                        "name": _unescape(d.name),
                        "kind": "localparam" if isinstance(d, ast.Localparam) else "parameter",
                        "value": value,
                    }
                )
    missing = [p for p in header if p not in declared]
    if missing:
        raise NfcError(f"module {name}: port {missing[0]} is listed in the header but never declared")
    return {"name": name, "ports": [declared[p] for p in header], "parameters": params}


def _streams(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The valid/ready stream interfaces among ``ports``: Amaranth names a stream member ``s`` as
    ``s__payload``, ``s__valid`` and ``s__ready``. ``direction`` is ``input`` when the module receives
    the stream (its valid is an input)."""
    by_name = {p["name"]: p for p in ports}
    found = []
    for p in ports:
        if not p["name"].endswith("__valid"):
            continue
        base = p["name"][: -len("__valid")]
        fields = {f: by_name.get(f"{base}__{f}") for f in _STREAM_FIELDS}
        if fields["payload"] is None:
            continue
        found.append(
            {
                "name": base,
                "direction": p["direction"],
                "payload_width": fields["payload"]["width"],
                "has_ready": fields["ready"] is not None,
            }
        )
    return found


_MODULES_CACHE: dict[str, list[dict[str, Any]]] = {}
_MODULES_CACHE_SIZE = 4


def _modules(verilog_text: str, digest: str) -> list[dict[str, Any]]:
    """The modules of ``verilog_text`` (its SHA-256 is ``digest``), remembered for the last few texts:
    parsing a large design takes seconds, and the same text always gives the same modules."""
    if digest not in _MODULES_CACHE:
        ast = _pyverilog()[0]
        tree = parse_verilog(verilog_text)
        modules = [_module_info(d) for d in tree.description.definitions if isinstance(d, ast.ModuleDef)]
        while len(_MODULES_CACHE) >= _MODULES_CACHE_SIZE:
            del _MODULES_CACHE[next(iter(_MODULES_CACHE))]
        _MODULES_CACHE[digest] = modules
    return _MODULES_CACHE[digest]


def manifest(
    verilog_text: str, top: str, target_name: str, *, verilog_file: str | None = None
) -> dict[str, Any]:
    """Describe emitted Verilog by parsing it: its modules, their ports and parameters, the top.

    Parameters
    ----------
    verilog_text : str
        The Verilog (without ``(* ... *)`` attributes, as :func:`nfc.rtl.emit.emit_verilog` gives it).
    top : str
        The top module's name; it must be one of the modules in the text.
    target_name : str
        The target (``ArchConfig.name``) the Verilog was generated for.
    verilog_file : str, optional
        The file name the text is written under, recorded in the manifest.

    Returns
    -------
    dict
        ``format``, ``version``, ``target``, ``top``, ``verilog`` (``file``, ``lines``, ``sha256``),
        ``streams`` (the top's stream interfaces: ``name``, ``direction``, ``payload_width``,
        ``has_ready``) and ``modules``: for each module in file order its ``name``, ``ports`` (header
        order; each ``name``, ``direction`` of ``input``/``output``/``inout``, ``width`` in bits,
        ``signed``) and ``parameters`` (``name``, ``kind``, ``value``). Names are the identifiers
        Verilog denotes (an escaped ``\\a.b`` becomes ``a.b``). JSON-ready and deterministic.

    Raises
    ------
    NfcError
        The text cannot be parsed, a port width is not constant, or ``top`` is not among its modules.
    """
    digest = hashlib.sha256(verilog_text.encode("utf-8")).hexdigest()
    modules = copy.deepcopy(_modules(verilog_text, digest))
    names = [m["name"] for m in modules]
    if top not in names:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise NfcError(f"the top module {top!r} is not in the Verilog; its modules are: {shown or 'none'}")
    top_ports = modules[names.index(top)]["ports"]
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "target": target_name,
        "top": top,
        "verilog": {
            "file": verilog_file,
            "lines": verilog_text.count("\n"),
            "sha256": digest,
        },
        "streams": _streams(top_ports),
        "modules": modules,
    }
