"""Property tests on the wire decoders: every framing round-trips, arbitrary bytes
never crash them, and stream splits never change what a connection yields."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logguardian.config import TcpReceiver
from logguardian.metrics import Metrics
from logguardian.receivers import decode, jsonscan
from logguardian.receivers.tcp import TcpServer
from logguardian.record import Normalizer

normalize = Normalizer("test")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
)
# Messages deliberately include the characters our fast paths split on.
messages = st.text(
    alphabet=st.sampled_from(list('ab }{[]\n"\\,:é✓')) | st.characters(exclude_categories=("Cs",)),
    max_size=40,
)
records = st.lists(
    st.fixed_dictionaries(
        {"log": messages},
        optional={
            "stream": st.sampled_from(["stdout", "stderr"]),
            "extra": json_scalars,
            "kubernetes": st.fixed_dictionaries(
                {"labels": st.fixed_dictionaries({"app": st.text(min_size=1, max_size=8)})}
            ),
        },
    ),
    min_size=1,
    max_size=30,
)


def frame(docs: list[dict[str, Any]], fmt: str) -> bytes:
    parts = [orjson.dumps(d) for d in docs]
    if fmt == "json":
        return b"[" + b",".join(parts) + b"]"
    if fmt == "json_lines":
        return b"".join(p + b"\n" for p in parts)
    if fmt == "json_stream":
        return b"".join(parts)
    if fmt == "crlf_lines":
        return b"".join(p + b"\r\n" for p in parts)
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["json", "json_lines", "json_stream", "crlf_lines"])
@given(docs=records)
@settings(max_examples=150, deadline=None)
def test_json_framings_round_trip(fmt: str, docs: list[dict[str, Any]]) -> None:
    out = decode.decode_json(frame(docs, fmt), normalize)
    assert out.rejected == 0, out.errors
    assert [r.message for r in out.records] == [d["log"] for d in docs]
    assert [r.attributes.get("extra") for r in out.records] == [d.get("extra") for d in docs]


@given(
    docs=records,
    stamps=st.lists(
        st.tuples(st.integers(1, 2**32 - 1), st.integers(0, 999_999_999)), min_size=30, max_size=30
    ),
    metadata=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_msgpack_entries_round_trip_with_event_time(
    docs: list[dict[str, Any]], stamps: list[tuple[int, int]], metadata: bool
) -> None:
    chunk = b""
    for doc, (sec, ns) in zip(docs, stamps, strict=False):
        t = msgpack.ExtType(0, struct.pack(">II", sec, ns))
        chunk += msgpack.packb([[t, {}] if metadata else t, doc])
    out = decode.decode_msgpack_entries(chunk, normalize)
    assert out.rejected == 0
    assert [r.message for r in out.records] == [d["log"] for d in docs]
    for r, (sec, ns) in zip(out.records, stamps, strict=False):
        assert r.ts == pytest.approx(sec + ns / 1e9, abs=1e-6)


@given(body=st.binary(max_size=300))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_crash_the_decoders(body: bytes) -> None:
    for fn in (decode.decode_json, decode.decode_msgpack_entries):
        try:
            out = fn(body, normalize)
        except decode.DecodeError:
            continue
        assert out.rejected == sum(out.reasons.values())
        assert set(out.reasons) <= set(decode.REJECT_REASONS)
    with contextlib.suppress(decode.DecodeError, decode.TooLarge):
        decode.inflate_gzip(body, 10_000)


@given(
    docs=records,
    bad=st.lists(
        st.sampled_from([b"nope", b"{oops", b"[1,2]", b'"str"', b'{"no_log":1}']), max_size=5
    ),
    seed=st.randoms(use_true_random=False),
)
@settings(max_examples=150, deadline=None)
def test_bad_lines_are_counted_and_never_cost_good_ones(
    docs: list[dict[str, Any]], bad: list[bytes], seed: Any
) -> None:
    lines = [orjson.dumps(d) for d in docs] + bad
    seed.shuffle(lines)
    out = decode.decode_json(b"\n".join(lines) + b"\n", normalize)
    good = [orjson.loads(line)["log"] for line in lines if line not in bad]
    assert [r.message for r in out.records] == good
    assert out.rejected == len(bad)


@given(
    docs=records, cuts=st.lists(st.integers(1, 200), min_size=1, max_size=40), newline=st.booleans()
)
@settings(max_examples=150, deadline=None)
def test_tcp_stream_split_anywhere_yields_the_same_events(
    docs: list[dict[str, Any]], cuts: list[int], newline: bool
) -> None:
    server = TcpServer(
        TcpReceiver(),
        pipeline=None,
        metrics=Metrics(),  # type: ignore[arg-type]
        service_fields=["service"],
    )
    stream = b"".join(orjson.dumps(d) + (b"\n" if newline else b"") for d in docs)
    events = server.stream()
    got: list[str] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        piece = stream[pos : pos + cut]
        pos += cut
        if not piece:
            continue
        out = events.feed(piece)
        assert out.rejected == 0, out.errors
        got.extend(r.message for r in out.records)
    if pos < len(stream):
        got.extend(r.message for r in events.feed(stream[pos:]).records)
    got.extend(r.message for r in events.finish().records)
    assert got == [d["log"] for d in docs]


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    deep = b'{"a":' + b"[" * 100_000
    with pytest.raises(decode.DecodeError, match="not terminated"):
        decode.decode_json(deep, normalize)
    for body in (b'{"log":"kept"}' + deep, b'{"log":"kept"}\n' + deep + b"\n"):
        out = decode.decode_json(body, normalize)
        assert [r.message for r in out.records] == ["kept"] and out.rejected == 1
    stream = decode.StreamDecoder(normalize, 1 << 20)
    assert stream.feed(deep).rejected == 0  # still open: waits for more
    out = stream.feed(b"", final=True)
    assert out.records == [] and out.rejected == 1


json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
shipper_keys = st.sampled_from(
    [
        "log",
        "message",
        "msg",
        "short_message",
        "date",
        "time",
        "@timestamp",
        "timestamp",
        "level",
        "log.level",
        "severity",
        "service",
        "service.name",
        "kubernetes",
        "app",
        "x",
    ]
)


@given(doc=st.dictionaries(shipper_keys, json_values, max_size=8))
@settings(max_examples=400, deadline=None)
def test_normalize_any_json_map_yields_a_record_or_a_clear_error(doc: dict[str, Any]) -> None:
    try:
        r = normalize(doc)
    except ValueError as exc:
        assert "no message field" in str(exc)
        return
    assert isinstance(r.message, str) and isinstance(r.service, str) and r.service
    assert isinstance(r.ts, float) and 0 < r.ts < 1e12
    assert r.level in (None, "trace", "debug", "info", "warn", "error", "fatal")


@pytest.mark.parametrize(
    "body",
    [
        b'[{"log":"bad \xff byte"},{"log":"ok"}]',
        b'{"log":"bad \xff byte"}\n{"log":"ok"}\n',
        b'{"log":"bad \xff byte"}{"log":"ok"}',
    ],
)
def test_invalid_utf8_costs_a_replacement_char_not_the_batch(body: bytes) -> None:
    out = decode.decode_json(body, normalize)
    assert [r.message for r in out.records] == ["bad \ufffd byte", "ok"]
    orjson.dumps([r.message for r in out.records])


def test_msgpack_invalid_utf8_is_replaced() -> None:
    entry = (
        b"\x92" + msgpack.packb(1718012392) + b"\x81" + msgpack.packb("log") + (b"\xa5a\xffb\xfec")
    )
    out = decode.decode_msgpack_entries(entry, normalize)
    assert [r.message for r in out.records] == ["a\ufffdb\ufffdc"]


def test_lone_surrogate_escape_is_refused_on_every_path() -> None:
    bad = b'{"log":"\\ud800"}'
    for body in (
        b"[" + bad + b',{"log":"ok"}]',
        bad + b'{"log":"ok"}',
        bad + b'\n{"log":"ok"}\n',
    ):
        out = decode.decode_json(body, normalize)
        assert [r.message for r in out.records] == ["ok"] and out.rejected == 1


@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(
            st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b"\n", b",", b"a", b" "])
        ).map(b"".join),
    ),
    cuts=st.lists(st.integers(1, 40), max_size=20),
)
@settings(max_examples=400, deadline=None)
def test_json_scanner_spans_are_ordered_and_split_reads_change_nothing(
    body: bytes, cuts: list[int]
) -> None:
    whole, _ = jsonscan.scan_all(body)
    last = 0
    for kind, a, b in whole:
        assert last <= a < b <= len(body) and kind in (jsonscan.VALUE, jsonscan.GARBAGE, 2)
        last = b
    # Fed in pieces, rebased as the TCP receiver does: the same spans.
    scanner, buf, base, got, pos = jsonscan.Scanner(), b"", 0, [], 0
    for cut in [*cuts, len(body)]:
        buf += body[pos : pos + cut]
        pos += cut
        got += [(k, a + base, b + base) for k, a, b in scanner.scan(buf, final=False)]
        drop = scanner.resume_point()
        buf, base = buf[drop:], base + drop
        scanner.rebase(drop)
    got += [(k, a + base, b + base) for k, a, b in scanner.scan(buf, final=True)]
    assert got == whole
