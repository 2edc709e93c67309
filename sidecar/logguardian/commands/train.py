"""`logguardian train`: learn a model bundle (DESIGN §7) from mostly-normal logs."""

from __future__ import annotations

import argparse
import sys

from ..training.train import TrainOptions


def run(args: argparse.Namespace) -> int:
    defaults = TrainOptions()
    options = TrainOptions(
        fmt=args.format,
        session_key=args.session_key,
        session_idle_seconds=getattr(args, "idle_seconds", None) or defaults.session_idle_seconds,
        window=getattr(args, "window", None) or defaults.window,
        arch=getattr(args, "arch", None) or defaults.arch,
        epochs=getattr(args, "epochs", None) or defaults.epochs,
        target_fpr=getattr(args, "target_fpr", None) or defaults.target_fpr,
    )
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"logguardian train: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        from ..training.train import train_bundle

        meta = train_bundle(args.files, args.out, options)
    except ImportError as exc:
        print(
            f"logguardian train needs the 'train' extra (pip install 'logguardian[train]'): {exc}",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:
        print(f"logguardian train: {exc}", file=sys.stderr)
        return 2
    t, h, c = meta["training"], meta["heldout"], meta["calibration"]
    kind = "new" if h["new_sessions"] else "random"
    print(
        f"wrote {args.out}: {len(meta['vocab'])} templates, {t['sessions']} sessions "
        f"({t['records']} records, {t['bad_lines']} bad lines) in {t['total_seconds']}s; "
        f"held-out session FPR {h['combined_session_fpr']} on {h['sessions']} {kind} "
        f"sessions; expected FPR bound over all sessions {c['bound_fpr_all_sessions']}",
        file=sys.stderr,
    )
    return 0
