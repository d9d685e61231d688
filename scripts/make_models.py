#!/usr/bin/env python
"""Build the benchmark networks as ONNX files.

Usage: ``python scripts/make_models.py OUTDIR [--only name,name]``.  A thin wrapper around
:func:`nfc.benchmarks.build_models`; needs the development extras (torch, onnxscript,
scikit-learn).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nfc.benchmarks import MODELS, build_models


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the requested models, return the exit status."""
    parser = argparse.ArgumentParser(
        description="Build the nfc benchmark networks (PyTorch) and export them to ONNX.",
        epilog="models: " + ", ".join(MODELS),
    )
    parser.add_argument("outdir", help="folder to write <name>.onnx files into (created if missing)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated model names to build (default: all)")
    args = parser.parse_args(argv)

    only: list[str] | None = None
    if args.only is not None:
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in only if name not in MODELS]
        if unknown or not only:
            parser.error(
                f"unknown model(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(MODELS)}"
            )
    build_models(args.outdir, only=only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
