"""Properties of the miner over generated lines, one per failure class of issue 12:
values of any shape, whitespace runs, optional value groups, `key=value` values, and
distinct events staying apart. No line here comes from a real log."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logguardian.templates.miner import TemplateMiner

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORD = st.from_regex(r"[a-z]{3,9}", fullmatch=True)
# Values of every shape a variable takes in real logs: words, numbers, host names
# with dashes, `LOCAL(0)`-like calls, words glued to digits, addresses, ids, paths.
VALUE = st.one_of(
    st.from_regex(r"[a-z]{2,8}", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]{1,6}", fullmatch=True),
    st.integers(0, 10**9).map(str),
    st.from_regex(r"[a-z]{2,6}(-[a-z0-9]{1,5}){1,3}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Z]{2,6}\([0-9]{1,3}\)", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}[0-9]{1,4}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.from_regex(r"0x[0-9a-f]{4,12}", fullmatch=True),
    st.from_regex(r"(/[a-z0-9_]{1,6}){2,4}", fullmatch=True),
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
    values=st.lists(VALUE, min_size=3, max_size=12, unique=True),
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
