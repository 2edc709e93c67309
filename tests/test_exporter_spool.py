"""The on-disk spool: FIFO across segments and restarts, a hard size bound that never
displaces what is already spooled, and a torn last write that is cut, not replayed."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from logguardian.exporters.spool import Spool


def drain(spool: Spool, chunk: int = 7) -> list[bytes]:
    out: list[bytes] = []
    while True:
        items, cursor = spool.peek(chunk)
        if not items:
            return out
        spool.commit(cursor)
        out.extend(items)


def test_fifo_across_segments_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    items = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 13)) for i in range(100)]
    assert sum(spool.append(items[i : i + 5]) for i in range(0, 60, 5)) == 60
    assert len(list(tmp_path.glob("*.seg"))) > 3, "small segments: several files"
    first, cursor = spool.peek(25)
    spool.commit(cursor)
    spool.close()

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert 0 < len(first) <= 25 and len(again) == 60 - len(first)
    assert again.append(items[60:]) == 40
    assert first + drain(again) == items
    assert len(again) == 0 and again.bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1, "drained segments are deleted"


def test_peek_without_commit_is_redelivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([b"a", b"b", b"c"])
    assert spool.peek(2)[0] == [b"a", b"b"]
    spool.close()
    assert Spool(tmp_path, max_bytes=1 << 20).peek(5)[0] == [b"a", b"b", b"c"]


def test_bound_refuses_the_newest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    assert spool.append([b"x" * 39, b"y" * 39]) == 2  # 80 bytes with newlines
    assert spool.append([b"z" * 10, b"w" * 30]) == 1  # 11 fit, the next does not
    assert spool.bytes == 91
    assert drain(spool) == [b"x" * 39, b"y" * 39, b"z" * 10]
    assert spool.append([b"q" * 90]) == 1, "room comes back once drained"


def test_torn_last_write_is_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([b"one", b"two"])
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as fh:
        fh.write(b'{"half')  # crash mid-append
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert len(again) == 2
    again.append([b"three"])
    assert drain(again) == [b"one", b"two", b"three"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9)), max_size=40))
def test_any_mix_of_appends_commits_and_restarts_keeps_order(
    tmp_path_factory, steps: list[tuple[bool, int]]
) -> None:
    path = tmp_path_factory.mktemp("spool")
    spool = Spool(path, max_bytes=1 << 20, segment_bytes=64)
    expected: list[bytes] = []
    got: list[bytes] = []
    n = 0
    for restart, k in steps:
        batch = [b"item-%d" % (n + i) for i in range(k)]
        n += k
        spool.append(batch)
        expected.extend(batch)
        items, cursor = spool.peek(k // 2 + 1)
        spool.commit(cursor)
        got.extend(items)
        if restart:
            spool.close()
            spool = Spool(path, max_bytes=1 << 20, segment_bytes=64)
    got.extend(drain(spool))
    assert got == expected
