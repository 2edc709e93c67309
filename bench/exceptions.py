"""Exception grouping quality and cost, in one run.

    .venv/bin/python bench/exceptions.py [--sites 24] [--records 20000] [--repeat 3]

1. Quality: programs generated for python3, java, node and go (tests/runtimes.py)
   are built and run by the real runtimes: `--sites` failure sites x 3 line shifts
   (the whole module padded, every throwing line moves) x 4 message variants. Each
   trace is fingerprinted; truth is the failure site. Reported as pairwise
   precision/recall (pairs of traces grouped together that should be / all pairs
   that should be), per runtime, on two splits:
     dev      = sites 0-7 with shifts/variants the tests use (seen while building)
     held-out = sites 8+ with shifts and variants never looked at while building
   Nothing is learned or tuned: the split only separates what shaped the rules.
2. Cost: records/s of the full processor chain on a mix of Loghub-2k lines with
   10% stack traces, with the exception stage and without it (same process, same
   records, alternating runs; only the ratio is stable on a shared machine); once
   with traces arriving whole (shipper multiline on) and once split one line per
   record (the rejoin fallback).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sidecar"))
sys.path.insert(0, str(ROOT / "tests"))

import runtimes  # noqa: E402
from logguardian.config import load_settings  # noqa: E402
from logguardian.exceptions.fingerprint import fingerprint  # noqa: E402
from logguardian.exceptions.parse import find_traces  # noqa: E402
from logguardian.pipeline import Batch  # noqa: E402
from logguardian.record import Record  # noqa: E402
from logguardian.server import Sidecar  # noqa: E402

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
RUNTIMES = ("python", "java", "node", "go")
DEV_SITES = 8
DEV_SHIFTS, HELD_SHIFTS = (0, 12), (5, 17)
DEV_VARIANTS, HELD_VARIANTS = (0, 3), (1, 2, 4, 5)


def corpus(n_sites: int, workdir: Path) -> list[tuple[str, str, int, int, int, str]]:
    """(runtime, split, site, shift, variant, trace) from the real runtimes."""
    sites = runtimes.make_sites(n_sites)
    out = []
    for runtime in RUNTIMES:
        for shift in (*DEV_SHIFTS, *HELD_SHIFTS):
            root = runtimes.write(runtime, workdir / f"{runtime}-{shift}" / "app", sites, shift)
            command = runtimes.build(runtime, root)
            cases = [(s.index, v) for s in sites for v in (*DEV_VARIANTS, *HELD_VARIANTS)]
            for (site, variant), text in zip(
                cases, runtimes.run_cases(command, runtime, cases), strict=True
            ):
                dev = site < DEV_SITES and shift in DEV_SHIFTS and variant in DEV_VARIANTS
                held = site >= DEV_SITES and shift in HELD_SHIFTS and variant in HELD_VARIANTS
                if dev or held:
                    out.append((runtime, "dev" if dev else "held-out", site, shift, variant, text))
        print(f"  {runtime}: built and ran {len(cases) * 4} cases", file=sys.stderr)
    return out


def pairwise(truth: list[str], predicted: list[str]) -> tuple[float, float]:
    same_true = same_pred = both = 0
    for (t1, p1), (t2, p2) in itertools.combinations(zip(truth, predicted, strict=True), 2):
        same_true += t1 == t2
        same_pred += p1 == p2
        both += t1 == t2 and p1 == p2
    precision = both / same_pred if same_pred else 1.0
    recall = both / same_true if same_true else 1.0
    return precision, recall


def quality(items: list[tuple[str, str, int, int, int, str]]) -> None:
    rows: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    unparsed = 0
    for runtime, split, site, _, _, text in items:
        traces = find_traces(text)
        fp = fingerprint("bench", traces[0]) if traces else f"unparsed-{len(text)}"
        unparsed += not traces
        for key in ((runtime, split), ("all", split)):
            rows[key][0].append(f"{runtime}:{site}")
            rows[key][1].append(fp)
    print(f"\ngrouping quality (pairwise; unparsed traces: {unparsed})")
    header = ("runtime", "split", "traces", "sites", "groups", "prec", "recall")
    print("{:8} {:9} {:>6} {:>5} {:>6} {:>6} {:>6}".format(*header))
    for (runtime, split), (truth, predicted) in sorted(rows.items()):
        p, r = pairwise(truth, predicted)
        print(
            f"{runtime:8} {split:9} {len(truth):6} {len(set(truth)):5} "
            f"{len(set(predicted)):6} {p:6.3f} {r:6.3f}"
        )


def mix(traces: list[str], n: int, split: bool) -> list[Record]:
    lines = []
    for path in sorted(LOGHUB.glob("*/*_2k.log")):
        service = path.parent.name.lower()
        lines += [(service, line) for line in path.read_text(errors="replace").splitlines()]
    rng = random.Random(11)
    out: list[Record] = []
    ts = 1_700_000_000.0
    t = 0
    while len(out) < n:
        ts += 0.001
        if rng.random() < 0.10:
            text = traces[t % len(traces)]
            t += 1
            parts = text.split("\n") if split else [text]
            for part in parts:
                out.append(Record(ts, part, "shop", "error", {"stream": "stderr"}, "http"))
        else:
            service, line = lines[rng.randrange(len(lines))]
            out.append(Record(ts, line, service, None, {"stream": "stdout"}, "http"))
    return out


def chain(enabled: bool, state: Path) -> Sidecar:
    settings = load_settings(
        state_dir=state,
        receivers={
            "http": {"port": 0},
            "forward": {"port": 0},
            "grpc": {"port": 0},
            "tcp": {"port": 0},
        },
        exceptions={"enabled": enabled},
    )
    return Sidecar(settings)


def throughput(sidecar: Sidecar, records: list[Record], batch: int = 2000) -> float:
    started = time.perf_counter()
    now = records[0].ts
    for i in range(0, len(records), batch):
        part = [
            Record(r.ts, r.message, r.service, r.level, dict(r.attributes), r.source)
            for r in records[i : i + batch]
        ]
        sidecar.pipeline.run_batch(part, now=now + i / 1000)
    return len(records) / (time.perf_counter() - started)


def stage_alone(records: list[Record], state: Path) -> float:
    """The exception stage by itself on the same mix, to show its own per-record cost."""
    sidecar = chain(True, state)
    stage = sidecar.components.handles["exceptions"]
    started = time.perf_counter()
    for i in range(0, len(records), 2000):
        part = [
            Record(r.ts, r.message, r.service, r.level, dict(r.attributes), r.source)
            for r in records[i : i + 2000]
        ]
        stage.process(Batch(records=part, now=records[0].ts + i / 1000))
    return len(records) / (time.perf_counter() - started)


def cost(traces: list[str], n: int, repeat: int, workdir: Path) -> None:
    print(f"\ncost: full chain, {n:,} records, 10% of records are traces, best of {repeat}")
    for split in (False, True):
        records = mix(traces, n, split)
        best = {True: 0.0, False: 0.0}
        for r in range(repeat):
            for enabled in (False, True):
                sidecar = chain(enabled, workdir / f"state-{split}-{enabled}-{r}")
                throughput(sidecar, records[: n // 10])  # warm: templates, windows
                best[enabled] = max(best[enabled], throughput(sidecar, records))
        how = "split one line per record (rejoined)" if split else "whole (multiline shipper)"
        alone = stage_alone(records, workdir / f"alone-{split}")
        print(
            f"  traces {how:38} without stage {best[False]:9,.0f} rec/s   with stage "
            f"{best[True]:9,.0f} rec/s   ratio {best[True] / best[False]:.2f}   "
            f"(stage alone {alone:,.0f} rec/s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=24)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lg-bench-exc-") as tmp:
        workdir = Path(tmp)
        print(
            f"generating the corpus with the real runtimes ({args.sites} sites)…", file=sys.stderr
        )
        items = corpus(args.sites, workdir)
        quality(items)
        cost([i[5] for i in items], args.records, args.repeat, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
