"""Shared fixtures: the benchmark networks are built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfc.benchmarks import build_models


@pytest.fixture(scope="session")
def benchmark_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[str]]:
    """Every benchmark model, exported once: (folder, paths written, progress lines)."""
    out = tmp_path_factory.mktemp("benchmarks")
    lines: list[str] = []
    paths = build_models(out, progress=lines.append)
    return out, paths, lines


@pytest.fixture(scope="session")
def benchmark_dir(benchmark_build: tuple[Path, list[Path], list[str]]) -> Path:
    """The folder holding ``<name>.onnx`` for every entry of ``nfc.benchmarks.MODELS``."""
    return benchmark_build[0]
