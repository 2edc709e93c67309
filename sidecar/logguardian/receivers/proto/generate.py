"""Regenerates the Python code for `ingest.proto`: `python -m logguardian.receivers.proto.generate`.

The generated `ingest_pb2.py`, `ingest_pb2.pyi` and `ingest_pb2_grpc.py` are
committed rather than built at install time, so the runtime needs only `grpcio`
and `protobuf` (no compiler, nothing to go wrong on a clean install or in a
read-only container). They are reproducible: protoc comes from the grpcio-tools
wheel pinned to exactly `GRPCIO_TOOLS_VERSION` in pyproject's dev extra, and
tests/test_grpc_proto.py regenerates them into a temp dir and requires the same
bytes, so the .proto and the committed code cannot drift apart.

protoc runs with the source root (`sidecar/`) as include path so the generated
imports read `from logguardian.receivers.proto import ingest_pb2`.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.85.1"
PROTO_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PROTO_DIR.parents[2]
PROTO_FILE = PROTO_DIR / "ingest.proto"
GENERATED = ("ingest_pb2.py", "ingest_pb2.pyi", "ingest_pb2_grpc.py")


def generate(out_dir: Path = SOURCE_ROOT) -> list[Path]:
    """Writes the generated files under `out_dir` (mirroring the package path)."""
    installed = metadata.version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        raise RuntimeError(
            f"grpcio-tools {installed} installed; the committed code is generated with "
            f"{GRPCIO_TOOLS_VERSION} (pip install grpcio-tools=={GRPCIO_TOOLS_VERSION})"
        )
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    relative = PROTO_FILE.relative_to(SOURCE_ROOT)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SOURCE_ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(relative),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    package_dir = out_dir / relative.parent
    return [package_dir / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate():
        print(path, file=sys.stderr)
