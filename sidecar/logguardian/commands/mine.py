"""`logguardian mine [FILE|-] [--state DIR]` (DESIGN §5, a contract): one JSON line
`{"template_id": ..., "template": ...}` per input line, in order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from ..templates.miner import TemplateMiner

CHUNK_LINES = 8192


def read_chunks(stream: BinaryIO, size: int = CHUNK_LINES) -> Iterator[list[str]]:
    """Lines as text; undecodable bytes become U+FFFD so binary input still mines."""
    chunk: list[str] = []
    for raw in stream:
        chunk.append(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run(args: argparse.Namespace) -> int:
    from ..config import load_settings

    settings = load_settings()
    miner = TemplateMiner(settings.templates)
    if args.state is not None:
        miner.load(args.state)
    out = sys.stdout.buffer
    encoded: dict[tuple[str, str], bytes] = {}
    source: BinaryIO
    if args.file == "-":
        source = sys.stdin.buffer
        return _mine(miner, source, out, encoded, args)
    try:
        source = open(args.file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        print(f"logguardian mine: {exc}", file=sys.stderr)
        return 2
    with source:
        return _mine(miner, source, out, encoded, args)


def _mine(
    miner: TemplateMiner,
    source: BinaryIO,
    out: BinaryIO,
    encoded: dict[tuple[str, str], bytes],
    args: argparse.Namespace,
) -> int:
    from tqdm import tqdm

    progress = tqdm(
        unit=" lines", unit_scale=True, disable=not sys.stderr.isatty(), file=sys.stderr
    )
    for chunk in read_chunks(source):
        progress.update(len(chunk))
        parts = []
        for pair in miner.add_batch(chunk):
            line = encoded.get(pair)
            if line is None:
                if len(encoded) > 100_000:
                    encoded.clear()
                line = orjson.dumps({"template_id": pair[0], "template": pair[1]}) + b"\n"
                encoded[pair] = line
            parts.append(line)
        out.write(b"".join(parts))
    out.flush()
    progress.close()
    if args.state is not None:
        miner.save(args.state)
    return 0
