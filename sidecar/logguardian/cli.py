"""`logguardian` entry point (DESIGN §5, a contract).

Each subcommand lives in `logguardian.commands.<name>` with `run(args) -> int`;
this module only declares the flags and dispatches, so `--help` stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .config import ConfigError, listener_names
from .memory import use_system_allocator


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=("raw", "jsonl"),
        default="raw",
        help="raw: one message per line; jsonl: one shipper record per line",
    )
    p.add_argument(
        "--session-key",
        metavar="REGEX",
        help="regex whose match groups records into sessions (e.g. 'blk_-?\\d+')",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logguardian", description="LogGuardian log anomaly detection sidecar"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the sidecar")
    serve.add_argument("--config", type=Path, help="YAML settings file")
    for name in listener_names():
        serve.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=int,
            dest=f"{name}_port",
            help=f"receivers.{name}.port (0 disables)",
        )
    serve.add_argument("--state-dir", type=Path, help="where state and the local store live")

    demo = sub.add_parser("demo", help="replay a shipped sample with incidents and show findings")
    demo.add_argument(
        "--speed", type=float, default=0, help="log seconds per wall second (0 = max)"
    )
    demo.add_argument("--state-dir", type=Path, help="state dir (default: a temp dir)")

    mine = sub.add_parser("mine", help="mine templates: one JSON line per input line")
    mine.add_argument("file", nargs="?", default="-", help="input file or - for stdin")
    mine.add_argument("--state", type=Path, help="state dir to restore from and save to")

    train = sub.add_parser("train", help="learn a model bundle from (mostly normal) logs")
    train.add_argument("files", nargs="+", type=Path)
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    _add_input_flags(train)
    train.add_argument("--window", type=int, help="templates of context per prediction (10)")
    train.add_argument("--arch", choices=("lstm", "gru"), help="recurrent cell (lstm)")
    train.add_argument("--epochs", type=int, help="training epochs (30)")
    train.add_argument("--target-fpr", type=float, help="held-out session FPR target (0.001)")
    train.add_argument(
        "--idle-seconds",
        type=float,
        help="a session closes after this much log time without records (3600)",
    )

    score = sub.add_parser("score", help="score records: one JSON line per input record")
    score.add_argument("file", help="input file or - for stdin")
    score.add_argument("--model", type=Path, help="model bundle dir (default: detectors only)")
    score.add_argument(
        "--state-dir", type=Path, help="restore/keep detector state here (default: a temp dir)"
    )
    _add_input_flags(score)

    analyze = sub.add_parser("analyze", help="score a timestamp,value CSV series per point")
    analyze.add_argument("file", help="CSV with a timestamp,value header, or - for stdin")
    analyze.add_argument("--out", type=Path, help="write timestamp,value,anomaly_score here")
    analyze.add_argument("--methods", help="comma-separated subset of the series methods")

    ev = sub.add_parser("eval", help="evaluate template mining against Loghub ground truth")
    ev.add_argument("paths", nargs="+", type=Path, help="*_structured.csv files or dataset dirs")
    ev.add_argument(
        "--loso", action="store_true", help="also GA with tunables chosen on the other datasets"
    )

    bench = sub.add_parser("bench", help="run a benchmark from bench/")
    bench.add_argument("name", help="benchmark name, e.g. mine, ingest, scenarios, hdfs")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and args.command == "serve":
        # As a process of its own, the long-running server gives memory back after a
        # flood (logguardian.memory); called in-process (tests) it leaves the host alone.
        use_system_allocator()
    module = importlib.import_module(f"logguardian.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except ConfigError as exc:
        print(f"logguardian {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
