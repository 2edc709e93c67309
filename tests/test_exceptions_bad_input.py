"""Bad input costs nothing but itself: truncated traces, a 10,000-frame trace, binary
junk and a 1 MB one-line "trace" go through the whole real chain without an error,
every record still flows, and what is kept stays bounded. Also the .NET and Ruby
formats (no runtime on the machine: samples in the shape those runtimes print)."""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Callable

import pytest
import runtimes
from logguardian.config import Settings
from logguardian.exceptions.annotate import ERROR_KEY
from logguardian.exceptions.parse import MAX_FRAMES, find_traces
from logguardian.exceptions.stage import MAX_STACK_CHARS
from logguardian.record import Record
from logguardian.server import Sidecar


@pytest.fixture(scope="module")
def real_traces(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = []
    sites = runtimes.make_sites(4)
    for runtime in ("python", "java"):
        root = runtimes.write(runtime, tmp_path_factory.mktemp(runtime) / "app", sites, 0)
        out += runtimes.run_cases(runtimes.build(runtime, root), runtime, [(3, 0), (1, 1)])
    return out


def _records(messages: list[str]) -> list[Record]:
    return [
        Record(ts=1000.0 + i, message=m, service="svc", level="error", source="http")
        for i, m in enumerate(messages)
    ]


def _chain(make_settings: Callable[..., Settings]) -> Sidecar:
    """The real processor chain and exporters, driven batch by batch."""
    return Sidecar(make_settings(exceptions={"warmup_records": 0, "rejoin": False}))


def _run(sidecar: Sidecar, messages: list[str]) -> list[Record]:
    errors_before = _errors(sidecar)
    batch = sidecar.pipeline.run_batch(_records(messages), now=2000.0)
    assert _errors(sidecar) == errors_before, "a stage failed"
    assert len(batch.records) == len(messages)  # every record flowed on
    assert all(t is not None for t in batch.template_ids)  # and was mined
    return batch.records


def _errors(sidecar: Sidecar) -> float:
    return sum(
        s.value
        for m in sidecar.metrics.processor_errors.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


def test_truncated_traces(make_settings: Callable[..., Settings], real_traces: list[str]) -> None:
    sidecar = _chain(make_settings)
    cut: list[str] = []
    rng = random.Random(7)
    for text in real_traces:
        lines = text.split("\n")
        cut += ["\n".join(lines[:k]) for k in range(1, len(lines))]  # at every line
        cut += [text[: rng.randrange(1, len(text))] for _ in range(20)]  # mid-line
    records = _run(sidecar, cut)
    parsed = [r for r in records if ERROR_KEY in r.attributes]
    assert parsed  # most prefixes still hold a (partial) trace
    for r in parsed:
        assert r.attributes[ERROR_KEY]["type"]
        assert len(r.attributes[ERROR_KEY]["grouping_key"]) == 16


def test_a_ten_thousand_frame_trace_is_kept_bounded(make_settings: Callable[..., Settings]) -> None:
    java = "java.lang.StackOverflowError: deep\n" + "\n".join(
        f"\tat com.example.Deep.recurse{i % 3}(Deep.java:{i % 90 + 10})" for i in range(10_000)
    )
    python = (
        "Traceback (most recent call last):\n"
        + "\n".join(f'  File "/app/deep.py", line {i}, in f{i}\n    f()' for i in range(10_000))
        + "\nRecursionError: maximum recursion depth exceeded"
    )
    go = "panic: deep\n\ngoroutine 1 [running]:\n" + "\n".join(
        f"main.f{i}(...)\n\t/app/main.go:{i}" for i in range(10_000)
    )
    sidecar = _chain(make_settings)
    tracemalloc.start()
    records = _run(sidecar, [java, python, go])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024 * 1024
    for r in records:
        error = r.attributes[ERROR_KEY]
        assert len(error["stack_trace"]) <= MAX_STACK_CHARS
    for text, innermost in ((java, "recurse0"), (go, "main.f0"), (python, None)):
        (trace,) = find_traces(text)
        assert len(trace.primary.frames) == MAX_FRAMES
        assert trace.primary.omitted > 0
        if innermost:  # printed innermost first: the throw site is kept
            assert trace.primary.frames[0].function == innermost
        else:  # Python prints it last, past the scan window: a bounded partial parse
            assert trace.primary.type == "<truncated>"
    stage = sidecar.components.handles["exceptions"]
    assert all(len(g.frames) <= stage.settings.max_frames for g in stage.store.groups.values())


def test_binary_junk_and_a_one_megabyte_line(make_settings: Callable[..., Settings]) -> None:
    rng = random.Random(3)
    junk = [os.urandom(4096).decode("utf-8", "replace") for _ in range(20)]
    junk += [
        "".join(
            rng.choice(["\n", "\tat ", "(", ")", ":", "x.y", "Error", "\x00", "é"])
            for _ in range(5000)
        )
        for _ in range(20)
    ]
    one_line = "Traceback (most recent call last): " + 'File "/app/x.py", line 1, in f ' * 33_000
    assert len(one_line) > 1_000_000
    with_frames_after = one_line + "\n\tat com.example.A.b(A.java:1)"
    nested_parens = "\tat " + "(" * 500_000 + "\n" + "\tat " + ")" * 500_000
    sidecar = _chain(make_settings)
    records = _run(sidecar, [*junk, one_line, with_frames_after, nested_parens])
    assert ERROR_KEY not in records[len(junk)].attributes  # one line: no trace to parse


def test_group_store_is_bounded(make_settings: Callable[..., Settings]) -> None:
    sidecar = Sidecar(
        make_settings(
            exceptions={"warmup_records": 0, "rejoin": False, "max_groups": 5, "max_frames": 3}
        )
    )
    traces = [
        f"java.lang.IllegalStateException: x\n\tat com.example.S{i}.f(S{i}.java:1)\n"
        + "\n".join(f"\tat com.example.T.g{k}(T.java:{k})" for k in range(10))
        for i in range(20)
    ]
    _run(sidecar, traces)
    stage = sidecar.components.handles["exceptions"]
    assert len(stage.store) == 5 and stage.store.evicted == 15
    assert all(len(g.frames) == 3 for g in stage.store.groups.values())


DOTNET = """Unhandled exception. System.InvalidOperationException: Checkout failed for order 42
 ---> System.ArgumentNullException: Value cannot be null. (Parameter 'coupon')
   at Shop.Cart.ApplyCoupon(String coupon) in /src/Shop/Cart.cs:line 31
   at Shop.Checkout.Run(Order order) in /src/Shop/Checkout.cs:line 12
   --- End of inner exception stack trace ---
   at Shop.Checkout.Run(Order order) in /src/Shop/Checkout.cs:line 17
   at Shop.Program.Main(String[] args) in /src/Shop/Program.cs:line 8
   at System.Threading.Tasks.Task.Execute()"""

RUBY = (
    (
        "app/models/cart.rb:31:in 'Cart#apply_coupon': undefined method 'discount' for nil "
        "(NoMethodError)\n"
    )
    + """\tfrom app/controllers/checkout_controller.rb:12:in 'CheckoutController#create'
\tfrom /usr/lib/ruby/gems/3.4.0/gems/actionpack-7.1/lib/action_controller/metal.rb:227:in 'dispatch'
\tfrom bin/rails:4:in '<main>'"""
)


def test_dotnet_inner_exceptions() -> None:
    (trace,) = find_traces(DOTNET)
    assert trace.runtime == "dotnet"
    outer, inner = trace.exceptions
    assert (outer.type, outer.relation) == ("System.InvalidOperationException", "primary")
    assert outer.message == "Checkout failed for order 42"
    assert (inner.type, inner.relation) == ("System.ArgumentNullException", "cause")
    assert [f.function for f in inner.frames] == ["ApplyCoupon", "Run"]
    assert [f.line for f in outer.frames] == [17, 8, None]
    assert outer.frames[0].file == "/src/Shop/Checkout.cs"
    assert outer.frames[-1].in_app is False  # System.*


def test_ruby_backtrace() -> None:
    (trace,) = find_traces("Completed 500\n" + RUBY)
    assert trace.runtime == "ruby"
    exc = trace.primary
    assert exc.type == "NoMethodError"
    assert exc.message == "undefined method 'discount' for nil"
    assert [f.function for f in exc.frames][:2] == [
        "Cart#apply_coupon",
        "CheckoutController#create",
    ]
    assert [f.in_app for f in exc.frames] == [True, True, False, True]
