"""`logguardian bench NAME [ARGS…]`: run `bench/NAME.py` from a source checkout.

Benchmarks live beside the package (they need the shared data and peers such as
Drain3, not shipped in the wheel), so this only finds them in a checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"


def available() -> list[str]:
    if not BENCH_DIR.is_dir():
        return []
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def run(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"{args.name}.py"
    if not script.is_file():
        names = ", ".join(available()) or f"none (no {BENCH_DIR})"
        print(f"logguardian: no benchmark '{args.name}'; available: {names}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(script), *args.rest], cwd=BENCH_DIR.parent)
