"""Odd input never crashes or stalls the miner: every line gets a live template."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from logguardian.templates.miner import EMPTY_TEMPLATE, TemplateMiner
from logguardian.templates.persistence import load_snapshot, save_snapshot

ANY_CHAR = st.characters(blacklist_categories=())  # includes controls and lone surrogates
LOGLIKE = st.sampled_from(
    [
        "user=root uid=0",
        "GET /a/b/c HTTP/1.1",
        "0x1F 10.0.0.1:80",
        '{"k": [1, 2]}',
        "a=b,c=d;e",
        "2024-01-31T12:00:00Z",
        "<NUM> <*> <IP>",
        "\x00\x01\x02",
        "\n\r\n",
        "ümlaut ✓ 日本",
        "a" * 300,
        "",
        " ",
        "\ufffd\ufffd",
    ]
)
MESSAGES = st.lists(st.one_of(st.text(ANY_CHAR, max_size=200), LOGLIKE), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_every_line_gets_a_live_template(messages: list[str]) -> None:
    miner = TemplateMiner()
    first = miner.add_batch(messages)
    assert len(first) == len(messages)
    for tid, text in first:
        assert miner.get(tid) is not None
        assert isinstance(text, str) and text
        orjson.dumps(text)  # writable as JSON (no lone surrogates)
    again = miner.add_batch(messages)
    assert [t for t, _ in again] == [miner.resolve(t) for t, _ in first]
    for message in messages:
        assert miner.match(message) is not None


@settings(max_examples=40, deadline=None)
@given(MESSAGES)
def test_any_state_survives_a_snapshot(tmp_path_factory, messages: list[str]) -> None:
    path = tmp_path_factory.mktemp("snap")
    miner = TemplateMiner()
    ids = [t for t, _ in miner.add_batch(messages, ["svc"] * len(messages), 5.0)]
    save_snapshot(miner, path)
    restored = TemplateMiner()
    assert load_snapshot(restored, path)
    assert sorted(i.id for i in restored.templates()) == sorted(i.id for i in miner.templates())
    assert [restored.resolve(t) for t in ids] == [miner.resolve(t) for t in ids]


def test_empty_and_blank_lines_share_the_empty_template() -> None:
    miner = TemplateMiner()
    (a, text), (b, _), (c, _) = miner.add_batch(["", "   ", "\t"])
    assert text == EMPTY_TEMPLATE
    assert a == b == c


def test_binary_garbage_is_marked() -> None:
    miner = TemplateMiner()
    _, text = miner.add("frame \x00\x01\x02\x03 end")
    assert text == "frame <BIN> end"
    _, text = miner.add(b"\xff\xfe data \xc3".decode("utf-8", "surrogateescape"))
    assert "<BIN>" in text


LINE_CHARS = st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",))
LINE_PARTS = st.sampled_from(
    [
        "0",
        "12",
        " ",
        ",",
        ", ",
        "-",
        "<",
        ">",
        "()",
        " ()",
        "/",
        "a/b/c",
        ":",
        "::",
        ".",
        "0x",
        "ab12cd34ef",
        "KB",
        " MB",
        "ms",
        "Jun 14 15:16:01",
        "2024-01-31 12:00:00",
        "@",
        "x.com",
        "1.2.3.4",
        "fe80::1",
        "api-7d4b9c8f6d-x2x9z",
        "=",
        "'",
        '"',
        "[",
        "]",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(LINE_PARTS, st.text(LINE_CHARS, max_size=5)), max_size=12).map("".join),
        min_size=1,
        max_size=8,
    )
)
@example(["\U0001fbf0"])  # a digit of another script, alone: no ASCII digit in the key
@example(["took \u0663 ms", "took 3 ms"])
def test_batch_masking_equals_line_masking(lines: list[str]) -> None:
    """Batch masking joins lines; no rule may see across a line or depend on its
    neighbours, or the same line would get different templates in different batches."""
    from logguardian.templates import masking

    assert masking.mask_many(lines) == [masking.mask(line) for line in lines]
    _, keys = masking.prepare(lines, 10_000)
    assert masking.mask_many(lines, keys) == [masking.mask(line) for line in lines]
