"""Traces from the real runtimes (python3, java, node, go), produced at test time:
parsing, fingerprint stability across line moves, distinct sites, chained causes,
and the runtimes' own uncaught-exception output. A missing runtime fails under CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import runtimes
from logguardian.exceptions.fingerprint import culprit, fingerprint
from logguardian.exceptions.parse import Trace, find_traces

RUNTIMES = ("python", "java", "node", "go")
SITES = runtimes.make_sites(8)
CASES = [(s.index, v) for s in SITES for v in (0, 3)]


def _trace(text: str) -> Trace:
    traces = find_traces(text)
    assert len(traces) == 1, text
    return traces[0]


@pytest.fixture(scope="module", params=RUNTIMES)
def produced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same program twice: as written, and edited so every throwing line moved
    (12 lines of padding on top of each module), run from different checkouts."""
    runtime = request.param
    runtimes.require(runtime)
    out: dict = {"runtime": runtime}
    for shift, name in ((0, "v1"), (12, "v2")):
        root = runtimes.write(runtime, tmp_path_factory.mktemp(name) / "app", SITES, shift)
        command = runtimes.build(runtime, root)
        out[name] = runtimes.run_cases(command, runtime, CASES)
        out[f"{name}_command"] = command
    return out


def test_nested_calls_parse_with_throw_site_first(produced: dict) -> None:
    runtime = produced["runtime"]
    for text in produced["v1"]:
        trace = _trace(text)
        assert trace.runtime == runtime
        # The innermost frame of the root cause is the helper that threw, in the
        # site's module; the call chain above it reaches the site's handler.
        root = trace.chain[-1]
        assert root.frames, text
        top = root.frames[0]
        assert f"elper{'_' if runtime == 'python' else ''}" in top.function, text
        assert top.line is not None and top.in_app
        functions = " ".join(f.function for e in trace.chain for f in e.frames)
        assert f"andle{'_' if runtime == 'python' else ''}" in functions
        for frame in (f for e in trace.chain for f in e.frames):
            # The program's own frames are in-app; the runtime's (node:internal…) not.
            own = not (frame.file or "").startswith("node:")
            assert frame.in_app == own, frame
        assert root.type not in ("<unknown>", "<truncated>"), text


def test_moved_lines_keep_the_fingerprint(produced: dict) -> None:
    moved = 0
    for before, after in zip(produced["v1"], produced["v2"], strict=True):
        t1, t2 = _trace(before), _trace(after)
        lines1 = [f.line for f in t1.chain[-1].frames]
        lines2 = [f.line for f in t2.chain[-1].frames]
        moved += lines1 != lines2
        assert fingerprint("shop", t1) == fingerprint("shop", t2), (before, after)
    assert moved == len(CASES)  # every throwing line really moved


def test_message_variants_share_a_group_and_sites_do_not(produced: dict) -> None:
    by_site: dict[int, set[str]] = {}
    for (site_index, _), text in zip(CASES, produced["v1"], strict=True):
        by_site.setdefault(site_index, set()).add(fingerprint("shop", _trace(text)))
    assert all(len(fps) == 1 for fps in by_site.values()), by_site
    distinct = {next(iter(fps)) for fps in by_site.values()}
    assert len(distinct) == len(SITES)


def test_a_different_throw_type_at_the_same_site_is_a_new_fingerprint(
    produced: dict, tmp_path: Path
) -> None:
    runtime = produced["runtime"]
    site = SITES[0]
    other = runtimes.Site(site.index, site.module, (site.kind + 1) % 5, site.wrap)
    root = runtimes.write(runtime, tmp_path / "app", [other, *SITES[1:]], 0)
    text = runtimes.run_cases(runtimes.build(runtime, root), runtime, [(0, 0)])[0]
    original = _trace(produced["v1"][0])
    changed = _trace(text)
    assert culprit(changed) == culprit(original)  # same place…
    assert changed.chain[-1].type != original.chain[-1].type  # …another failure
    assert fingerprint("shop", changed) != fingerprint("shop", original)


def test_chained_causes_are_parsed(produced: dict) -> None:
    runtime = produced["runtime"]
    if runtime == "go":
        # Go panics carry no cause chain (errors wrap into the message): none invented.
        assert all(len(_trace(t).exceptions) == 1 for t in produced["v1"])
        return
    wrapped = [i for i, (s, _) in enumerate(CASES) if SITES[s].wrap]
    assert wrapped
    for i in wrapped:
        trace = _trace(produced["v1"][i])
        assert len(trace.chain) == 2, produced["v1"][i]
        outer, cause = trace.chain
        assert outer.relation == "primary" and cause.relation == "cause"
        assert outer.type.endswith(("RuntimeError", "RuntimeException", "Error"))
        assert "failed" in outer.message
        assert cause.frames and "elper" in cause.frames[0].function


def test_the_runtimes_own_uncaught_output_parses(produced: dict) -> None:
    runtime = produced["runtime"]
    site = next(s for s in SITES if s.wrap == (runtime != "go"))
    text = runtimes.run_uncaught(produced["v1_command"], (site.index, 1))
    trace = _trace(text)
    caught = _trace(produced["v1"][CASES.index((site.index, 0))])
    # The uncaught report adds preamble (Node's source excerpt, Java's thread name,
    # Go's exit) and, for Python/Java/Node, more outer frames: same failure site.
    assert trace.chain[-1].type == caught.chain[-1].type
    assert trace.chain[-1].frames[0].function == caught.chain[-1].frames[0].function


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_release_directories_do_not_split_a_group(runtime: str, tmp_path: Path) -> None:
    """Deploys unpack each release into its own directory; the entry file sits at
    its root, so its frame's path differs only in the release directory."""
    runtimes.require(runtime)
    fps = set()
    for release, shift in (("1.4.2", 0), ("1.4.3", 5), ("2b7e41c", 9)):
        root = runtimes.write(runtime, tmp_path / "releases" / release, SITES, shift)
        (text,) = runtimes.run_cases(runtimes.build(runtime, root), runtime, [(3, 1)])
        assert f"{release}/main." in text  # the entry file's frame names the release dir
        fps.add(fingerprint("shop", _trace(text)))
    assert len(fps) == 1
