"""Properties of the miner over generated lines, one per failure class of issue 12:
values of any shape, whitespace runs, optional value groups, `key=value` values, and
distinct events staying apart. No line here comes from a real log."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logguardian.templates.miner import TemplateMiner

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORD = st.from_regex(r"[a-z]{3,9}", fullmatch=True)
# Unix paths, glob segments included (`/api/*`, `/var/log/*.log`, `/src/**`).
PATH = st.lists(
    st.one_of(
        st.from_regex(r"[a-z0-9_]{1,6}", fullmatch=True),
        st.sampled_from(["*", "**"]),
        st.from_regex(r"\*\.[a-z]{1,4}", fullmatch=True),
    ),
    min_size=2,
    max_size=4,
).map(lambda segments: "/" + "/".join(segments))
# Values of every shape a variable takes in real logs: words, names, numbers, host
# names with dashes, `LOCAL(0)`-like calls, words glued to digits, addresses, ids,
# paths. (Capitalized plain keywords such as `Started` are the one shape that needs
# more evidence, rule G7 in docs/templates.md; they are tested apart below.)
VALUE = st.one_of(
    st.from_regex(r"[a-z]{2,8}", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]{1,6}(\.[a-z]{2,3}|[A-Z][a-z]{1,5})", fullmatch=True),
    st.integers(0, 10**9).map(str),
    st.from_regex(r"[a-z]{2,6}(-[a-z0-9]{1,5}){1,3}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Z]{2,6}\([0-9]{1,3}\)", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}[0-9]{1,4}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.from_regex(r"0x[0-9a-f]{4,12}", fullmatch=True),
    PATH,
)
SPACES = st.from_regex(r"[ \t]{1,4}", fullmatch=True)


def _distinct(n_min: int, n_max: int) -> st.SearchStrategy[list[str]]:
    return st.lists(WORD, min_size=n_min, max_size=n_max, unique=True)


def _ids(miner: TemplateMiner, lines: list[str]) -> set[str]:
    ids = [miner.add(line)[0] for line in lines]
    return {miner.resolve(t) for t in ids}


@PROPS
@given(
    words=_distinct(4, 8),
    at=st.integers(0, 8),
    values=st.one_of(
        st.lists(VALUE, min_size=3, max_size=12, unique=True),
        # A path is a value by its notation (rule M1): two show the position varies.
        st.lists(PATH, min_size=2, max_size=2, unique=True),
    ),
)
def test_a_variable_of_any_shape_maps_to_one_template(
    words: list[str], at: int, values: list[str]
) -> None:
    at %= len(words) + 1
    lines = [" ".join([*words[:at], v, *words[at:]]) for v in values]
    assert len(_ids(TemplateMiner(), lines)) == 1, lines


@PROPS
@given(
    words=_distinct(4, 8),
    at=st.integers(0, 8),
    values=st.lists(VALUE, min_size=3, max_size=8, unique=True),
    empty_first=st.booleans(),
)
def test_an_empty_field_does_not_split_the_event(
    words: list[str], at: int, values: list[str], empty_first: bool
) -> None:
    """`invalid user  from` (the value is empty, two spaces remain) is the event
    `invalid user <*> from`."""
    at = at % (len(words) - 1) + 1
    empty = " ".join(words[:at]) + "  " + " ".join(words[at:])
    lines = [" ".join([*words[:at], v, *words[at:]]) for v in values]
    lines = [empty, *lines] if empty_first else [*lines, empty]
    assert len(_ids(TemplateMiner(), lines)) == 1, lines


@PROPS
@given(
    words=_distinct(3, 10),
    values=st.lists(VALUE, min_size=1, max_size=4),
    gaps=st.lists(SPACES, min_size=16, max_size=16),
    lead=st.sampled_from(["", " ", "\t", "  "]),
)
def test_whitespace_runs_do_not_change_the_template(
    words: list[str], values: list[str], gaps: list[str], lead: str
) -> None:
    fields = [*words[:2], *values, *words[2:]]
    plain = " ".join(fields)
    spaced = lead + "".join(f + g for f, g in zip(fields, gaps, strict=False)) + lead
    miner = TemplateMiner()
    first = miner.add(plain)
    assert miner.add(spaced) == first


@PROPS
@given(
    words=_distinct(4, 8),
    at=st.integers(1, 8),
    sizes=st.lists(st.integers(0, 10**7), min_size=4, max_size=10),
    unit=st.sampled_from(["KB", "MB", "ms", "%", ""]),
    mask=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_an_optional_value_group_does_not_split_the_event(
    words: list[str], at: int, sizes: list[int], unit: str, mask: list[bool]
) -> None:
    """`sent 1190 bytes (1.16 KB) in` and `sent 403 bytes in` are one event."""
    at %= len(words)
    at = max(at, 1)
    lines = []
    for size, with_group in zip(sizes, mask, strict=False):
        group = [f"({size / 1000:.2f} {unit})".replace(" )", ")")] if with_group else []
        lines.append(" ".join([*words[:at], str(size), *group, *words[at:]]))
    assert len(_ids(TemplateMiner(), lines)) == 1, lines


@PROPS
@given(
    words=_distinct(2, 6),
    name=st.from_regex(r"[a-z]{2,8}", fullmatch=True),
    values=st.lists(VALUE, min_size=2, max_size=6, unique=True),
)
def test_key_value_values_generalize(words: list[str], name: str, values: list[str]) -> None:
    """`user=root` and `user=ftp`: a `key=` value is a value once it varies."""
    lines = [" ".join([*words, f"{name}={v}", "done"]) for v in values]
    assert len(_ids(TemplateMiner(), lines)) == 1, lines


@PROPS
@given(
    words=_distinct(3, 8),
    other=WORD,
    at=st.integers(0, 8),
    slot=st.integers(0, 8),
    values=st.lists(VALUE, min_size=1, max_size=6),
)
def test_events_with_different_constant_words_stay_apart(
    words: list[str], other: str, at: int, slot: int, values: list[str]
) -> None:
    """Two events that differ in one constant word never share a template, however
    their variables vary."""
    at %= len(words)
    if other == words[at]:
        other += "x"
    twin = [*words[:at], other, *words[at + 1 :]]
    slot %= len(words) + 1
    miner = TemplateMiner()
    a = [" ".join([*words[:slot], v, *words[slot:]]) for v in values]
    b = [" ".join([*twin[:slot], v, *twin[slot:]]) for v in values]
    ids_a = [miner.add(line)[0] for line in a]
    ids_b = [miner.add(line)[0] for line in b]
    final_a = {miner.resolve(t) for t in ids_a}
    final_b = {miner.resolve(t) for t in ids_b}
    assert final_a.isdisjoint(final_b), (a, b)


FIELD = st.one_of(
    st.sampled_from(["a", "bb", "ccc", "dd", "e", "ff", "ggg"]),
    st.integers(0, 999).map(str),
    st.sampled_from(["k=a", "k=bb", "k=", "(x)", "(y)", "", "LOCAL(0)"]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(
        st.lists(st.lists(FIELD, max_size=7).map(" ".join), min_size=1, max_size=30),
        min_size=1,
        max_size=8,
    ),
    cap=st.sampled_from([3, 10, 50]),
)
def test_merges_evictions_and_snapshots_keep_the_index_consistent(
    batches: list[list[str]], cap: int
) -> None:
    """Every alias belongs to a live template, every indexed pattern is a live
    template or alias, no bucket is empty, and every line's id resolves to a live
    template unless the cap evicted it."""
    from logguardian.config import Templates

    miner = TemplateMiner(Templates(max_templates=cap))
    for batch in batches:
        ids = miner.assign(batch)
        assert all(tid in miner._templates for tid in ids)
        miner.add_batch(batch)
        for alias in miner._aliases.values():
            assert miner.resolve(alias.id) in miner._templates
        for bucket in miner._buckets.values():
            assert bucket
            assert all(t.id in miner._templates or t.id in miner._aliases for t in bucket)
        restored = TemplateMiner(Templates(max_templates=cap))
        restored.import_state(orjson.loads(miner.export_bytes()))
        assert {t.id for t in restored.templates()} == {t.id for t in miner.templates()}
        assert restored.merges() == miner.merges()


@PROPS
@given(
    words=_distinct(4, 8),
    at=st.integers(0, 8),
    states=st.lists(st.from_regex(r"[A-Z][a-z]{2,8}|[A-Z]{2,8}", fullmatch=True), unique=True),
)
def test_capitalized_keywords_split_until_six_distinct(
    words: list[str], at: int, states: list[str]
) -> None:
    """`VM Started` / `VM Stopped`: capitalized plain words stay apart until six
    distinct ones were seen at the same place (twice the evidence of rule G5)."""
    at %= len(words) + 1
    states = states[:8]
    miner = TemplateMiner()
    ids = _ids(miner, [" ".join([*words[:at], v, *words[at:]]) for v in states])
    if len(states) < 6:
        assert len(ids) == len(states)
    else:
        assert len(ids) == 1
