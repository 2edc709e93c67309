"""Template mining: accuracy and speed of LogGuardian's miner against Drain3 (issue 3).

Everything is measured in this one process, on the same input, so the ratios hold
on a busy machine even when the absolute figures move:

1. GA / PA / FGA per Loghub-2k dataset (`../shared/data/loghub`), ours and Drain3
   with its default settings, one fresh miner per dataset, one global config.
2. Lines/s on the Loghub message mix (the 8 datasets interleaved) repeated to
   >= 500k lines, and on raw HDFS lines rendered by `hdfs_replay.py` (>= 300k).
3. Two 1M-line streams — HDFS replay (fresh block ids, ports, times on every
   line) and the Loghub mix with every number redrawn on each pass — templates
   and lines/s per 100k-line segment, for both miners.
4. Peak RSS of a fresh process that mines each stream, for each miner.

    .venv/bin/python bench/mine.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from drain3 import TemplateMiner as Drain3
from drain3.template_miner_config import TemplateMinerConfig
from logguardian.templates.evaluate import Scores, load_loghub, score
from logguardian.templates.miner import TemplateMiner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LOGHUB = SHARED / "data" / "loghub"
HDFS = SHARED / "data" / "hdfs"
REPLAY = SHARED / "tools" / "hdfs_replay.py"
BATCH = 2000  # the pipeline's default batch size
DRAIN3_BUDGET_S = 120  # per long stream: Drain3 slows to ~1k lines/s as its tree grows


def drain3() -> Drain3:
    return Drain3(config=TemplateMinerConfig())


# -- accuracy ---------------------------------------------------------------------------


def ours_groups(messages: Sequence[str]) -> tuple[list[str], list[str]]:
    miner = TemplateMiner()
    ids = [miner.resolve(t) for t, _ in miner.add_batch(messages)]
    return ids, [miner.text(t) or "" for t in ids]


def drain3_groups(messages: Sequence[str]) -> tuple[list[str], list[str]]:
    miner = drain3()
    ids = [str(miner.add_log_message(m)["cluster_id"]) for m in messages]
    texts = {str(c.cluster_id): c.get_template() for c in miner.drain.clusters}
    return ids, [texts[i] for i in ids]


def accuracy() -> None:
    print("== Accuracy on Loghub-2k (GA = grouping, PA = parsing, FGA = group F1)")
    print(f"{'dataset':<11}{'ours GA':>9}{'PA':>7}{'FGA':>7}   {'Drain3 GA':>9}{'PA':>7}{'FGA':>7}")
    totals: dict[str, list[Scores]] = {"ours": [], "drain3": []}
    for path in sorted(p for p in LOGHUB.iterdir() if p.is_dir()):
        ds = load_loghub(path)
        row = []
        for name, fn in (("ours", ours_groups), ("drain3", drain3_groups)):
            ids, texts = fn(ds.messages)
            s = score(ds.name, ids, texts, ds.truth_ids, ds.truth_templates)
            totals[name].append(s)
            row.append(s)
        a, b = row
        print(
            f"{ds.name:<11}{a.ga:>9.3f}{a.pa:>7.3f}{a.fga:>7.3f}   {b.ga:>9.3f}{b.pa:>7.3f}"
            f"{b.fga:>7.3f}"
        )
    avg = {
        k: [sum(getattr(s, m) for s in v) / len(v) for m in ("ga", "pa", "fga")]
        for k, v in totals.items()
    }
    print(
        f"{'average':<11}{avg['ours'][0]:>9.3f}{avg['ours'][1]:>7.3f}{avg['ours'][2]:>7.3f}   "
        f"{avg['drain3'][0]:>9.3f}{avg['drain3'][1]:>7.3f}{avg['drain3'][2]:>7.3f}"
    )
    worst = min(totals["ours"], key=lambda s: s.ga)
    print(f"ours: lowest GA {worst.ga:.3f} ({worst.name}); targets: average >= 0.95, none < 0.85")


def replay_truth(lines: Sequence[str]) -> list[str]:
    """Event id of each rendered HDFS line, from hdfs_replay.py's own event table."""
    spec = importlib.util.spec_from_file_location("hdfs_replay", REPLAY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    patterns = []
    for event, (level, component, fmt) in module.EVENTS.items():
        content = re.sub(r"\\\{\w+\\\}|\{\w+\}", "(.+?)", re.escape(fmt))
        patterns.append(
            (
                str(event),
                re.compile(rf"\d{{6}} \d{{6}} \d+ {level} {re.escape(component)}: {content}$"),
            )
        )
    out = []
    for line in lines:
        out.append(next((event for event, p in patterns if p.match(line)), "?"))
    return out


def replay_accuracy(lines: Sequence[str]) -> None:
    """Raw HDFS lines (header included) against the replay's event ids: a check on
    data the miner was not tuned on, and the ids the session model keys on."""
    truth = replay_truth(lines)
    ours, _ = ours_groups(lines)
    d3, _ = drain3_groups(lines)
    blank = [""] * len(lines)
    a = score("replay", ours, blank, truth, blank)
    b = score("replay", d3, blank, truth, blank)
    print(
        f"== Raw HDFS replay lines vs their event ids: {len(lines):,} lines, {a.true_groups} events"
    )
    print(f"   ours   GA {a.ga:.3f} FGA {a.fga:.3f} ({a.predicted_groups} templates)")
    print(f"   Drain3 GA {b.ga:.3f} FGA {b.fga:.3f} ({b.predicted_groups} clusters)")


# -- speed ------------------------------------------------------------------------------


def compare(title: str, lines: Sequence[str], target: float | None, rounds: int = 8) -> None:
    """Both miners take the input in the same `rounds` slices, alternating, each
    keeping its state: a load spike from other work on the machine lands on both
    rather than skewing the ratio."""
    ours = TemplateMiner()
    d3 = drain3()
    add = d3.add_log_message
    ours_s = d3_s = 0.0
    step = -(-len(lines) // rounds)
    for start in range(0, len(lines), step):
        part = lines[start : start + step]
        t0 = time.perf_counter()
        for i in range(0, len(part), BATCH):
            ours.add_batch(part[i : i + BATCH])
        t1 = time.perf_counter()
        for line in part:
            add(line)
        d3_s += time.perf_counter() - t1
        ours_s += t1 - t0
    ours_rate, d3_rate = len(lines) / ours_s, len(lines) / d3_s
    ratio = ours_rate / d3_rate
    print(f"== {title}: {len(lines):,} lines")
    print(f"   ours   {ours_rate:>11,.0f} lines/s  {len(ours):>6} templates")
    print(f"   Drain3 {d3_rate:>11,.0f} lines/s  {len(d3.drain.clusters):>6} clusters")
    if target is None:
        print(f"   ratio  {ratio:.1f}x")
    else:
        verdict = "meets" if ratio >= target else "MISSES"
        print(f"   ratio  {ratio:.1f}x (target >= {target:.0f}x: {verdict})")


def loghub_mix() -> list[str]:
    sets = [load_loghub(p).messages for p in sorted(LOGHUB.iterdir()) if p.is_dir()]
    return [m for group in zip(*sets, strict=False) for m in group]


def hdfs_replay(out: Path, sessions: int, seed: int = 11) -> list[str]:
    cmd = [
        sys.executable,
        str(REPLAY),
        "--normal",
        str(HDFS / "dev_normal.txt"),
        "--abnormal",
        str(HDFS / "dev_abnormal.txt"),
        "--normal-sessions",
        str(sessions),
        "--abnormal-sessions",
        str(max(1, sessions * 3 // 100)),
        "--seed",
        str(seed),
    ]
    with out.open("w") as fh:
        subprocess.run(cmd, stdout=fh, check=True)
    return out.read_text().splitlines()


def fresh_mix(mix: Sequence[str], total: int, seed: int = 5) -> list[str]:
    """The Loghub mix cycled to `total` lines with every number redrawn on every
    pass: same events, never the same line twice. Free-standing numbers also change
    length (counts, sizes, durations); digits inside a token (ids, addresses,
    times) keep their length, as real ids do."""
    rng = random.Random(seed)
    joined = "\n".join(mix)

    def redraw(match: re.Match[str]) -> str:
        digits = match.group()
        before = joined[match.start() - 1 : match.start()]
        after = joined[match.end() : match.end() + 1]
        if before in (" ", "=", "(", "") and after in (" ", ",", ")", "\n", ""):
            return str(rng.randrange(10 ** rng.randint(1, len(digits) + 2)))
        return "".join(rng.choice("0123456789") for _ in digits)

    out: list[str] = []
    while len(out) < total:
        out.extend(_DIGIT_RUN.sub(redraw, joined).split("\n"))
    return out[:total]


_DIGIT_RUN = re.compile(r"\d+")


def unique_shapes(total: int, seed: int = 9) -> str:
    """Lines whose ids mix letters and digits at random: every line misses the shape
    caches, so they fill to their bounds."""
    rng = random.Random(seed)
    hexdigits = "0123456789abcdef"
    out = []
    for i in range(total):
        rid = "".join(rng.choice(hexdigits) for _ in range(16))
        user = "".join(rng.choice(hexdigits) for _ in range(8))
        out.append(f"request {rid} for session {user} served in {i % 997} ms")
    return "\n".join(out) + "\n"


def stream(title: str, lines: Sequence[str], segment: int) -> None:
    """Templates and speed per segment: flat means no growth in either. Drain3 stops
    once it has used DRAIN3_BUDGET_S (its slowdown on a growing tree is the point)."""
    print(f"== Long stream: {len(lines):,} {title}, per {segment:,}-line segment")
    print(
        f"   {'lines':>9} {'ours tmpl':>9} {'ours l/s':>10} {'Drain3 clus':>11} {'Drain3 l/s':>10}"
    )
    ours = TemplateMiner()
    d3 = drain3()
    add = d3.add_log_message
    d3_spent = 0.0
    for start in range(0, len(lines), segment):
        chunk = lines[start : start + segment]
        t0 = time.perf_counter()
        for i in range(0, len(chunk), BATCH):
            ours.add_batch(chunk[i : i + BATCH])
        t1 = time.perf_counter()
        row = f"   {start + len(chunk):>9,} {len(ours):>9} {len(chunk) / (t1 - t0):>10,.0f} "
        if d3_spent < DRAIN3_BUDGET_S:
            for line in chunk:
                add(line)
            t2 = time.perf_counter()
            d3_spent += t2 - t1
            row += f"{len(d3.drain.clusters):>11} {len(chunk) / (t2 - t1):>10,.0f}"
        else:
            row += f"{'(stopped: over ' + str(DRAIN3_BUDGET_S) + ' s)':>22}"
        print(row, flush=True)


RssQueue = "multiprocessing.Queue[tuple[float, float]]"


def _peak_rss_child(path: str, which: str, queue: RssQueue) -> None:
    """Streams the file in batches (the input is not held) and reports RSS before
    mining (interpreter + imports) and the peak after."""
    base = _rss_mb()
    with open(path, encoding="utf-8") as fh:
        if which == "ours":
            miner = TemplateMiner()
            while batch := [line.rstrip("\n") for _, line in zip(range(BATCH), fh, strict=False)]:
                miner.add_batch(batch)
        else:
            d3 = drain3()
            deadline = time.perf_counter() + DRAIN3_BUDGET_S
            for n, line in enumerate(fh):
                d3.add_log_message(line.rstrip("\n"))
                if n % 1000 == 0 and time.perf_counter() > deadline:
                    print(f"   (Drain3 stopped after {n:,} lines: over {DRAIN3_BUDGET_S} s)")
                    break
    queue.put((base, _status_mb("VmHWM")))


def _status_mb(field: str) -> float:
    """From /proc/self/status; VmHWM (peak RSS) belongs to this exec'd image, unlike
    ru_maxrss, which Linux carries over from the forking parent."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss(path: Path, lines: int) -> None:
    """Each miner in a fresh process, so neither sees the other's allocations."""
    ctx = multiprocessing.get_context("spawn")
    print(f"== Peak RSS mining {lines:,} lines in a fresh process (target <= 100 MB)")
    for which in ("ours", "drain3"):
        queue: RssQueue = ctx.Queue()
        proc = ctx.Process(target=_peak_rss_child, args=(str(path), which, queue))
        proc.start()
        base, peak = queue.get()
        proc.join()
        print(
            f"   {which:<7} peak {peak:>7.1f} MB  (of which {base:.1f} MB before mining: "
            "interpreter and imports)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    args = ap.parse_args()
    mix_lines = 100_000 if args.quick else 512_000
    hdfs_sessions = 3_000 if args.quick else 16_000  # ~20 lines per session
    stream_sessions = 5_000 if args.quick else 52_000
    stream_lines = 100_000 if args.quick else 1_000_000
    segment = 25_000 if args.quick else 100_000

    accuracy()
    mix = loghub_mix()
    repeated = (mix * (mix_lines // len(mix) + 1))[:mix_lines]
    compare("Loghub message mix, one pass (every line new to both miners)", mix, None)
    compare("Loghub message mix, repeated", repeated, 5)
    with tempfile.TemporaryDirectory() as tmp:
        hdfs = hdfs_replay(Path(tmp) / "hdfs.log", hdfs_sessions)
        replay_accuracy(hdfs[:100_000])
        compare("Raw HDFS lines (hdfs_replay.py)", hdfs, 3)
        long_path = Path(tmp) / "stream.log"
        long = hdfs_replay(long_path, stream_sessions, seed=12)
        stream("raw HDFS lines", long, segment)
        peak_rss(long_path, len(long))
        del long
        fresh_path = Path(tmp) / "fresh.log"
        fresh = fresh_mix(mix, stream_lines)
        fresh_path.write_text("\n".join(fresh) + "\n")
        stream("Loghub mix lines, numbers redrawn each pass", fresh, segment)
        peak_rss(fresh_path, len(fresh))
        del fresh
        unique_path = Path(tmp) / "unique.log"
        unique_path.write_text(unique_shapes(stream_lines))
        print("== Worst case for the caches: no two lines share a shape (random hex ids)")
        peak_rss(unique_path, stream_lines)


if __name__ == "__main__":
    main()
