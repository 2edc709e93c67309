"""Streaming template miner: masked line → template id, learning as it goes.

Three tiers, cheapest first:

1. shape cache: line with every digit written "0" → template id (one dict lookup,
   keys made for a whole batch at once); on a miss, the same key with each run of
   digits folded to one "0" (numbers of another length);
2. exact cache: fully masked line → template id;
3. learning: split into whitespace fields, compare with patterns of the same
   length sharing the first or last constant word, and either widen the closest
   (positions that differ become `<*>`) or start a new template; a new or widened
   template whose constants read like another's (same skeleton) is that event.

A template keeps its id for life, however much it generalizes. When two
templates turn out to be one event the younger one is merged into the older: the
mapping is kept, so ids written into annotations or feedback stay resolvable, and
the younger pattern stays as an alias so lines of its shape find the survivor.
Every rule is listed, with its reason, in docs/templates.md.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..config import Templates as TemplateSettings
from . import masking
from .tokenize import covers, is_value, key, skeleton, tokens, widen

EMPTY_TEMPLATE = "<EMPTY>"
# Tokenizer generation written into snapshots; older snapshots are re-tokenized.
TOKENS_VERSION = 2
TRUNCATED = "<…>"
# Caches are dropped wholesale when they reach these sizes: cheaper than LRU
# bookkeeping on every line, and they refill from the next few batches.
# Sized so that a stream where no two lines share a shape (random hex ids) still
# stays well under 100 MB RSS.
SHAPE_CACHE_MAX = 65_536
EXACT_CACHE_MAX = 32_768
# Per-template service counts beyond this many services are pooled as "other".
MAX_SERVICES_PER_TEMPLATE = 64
OTHER_SERVICE = "other"
# A line that differs from a pattern only in values must still share this share of
# the pattern's constant words (word differences need `similarity` instead).
VALUE_AGREEMENT = 0.5
# Learning compares a new line with at most this many patterns per bucket (the
# oldest, i.e. the established ones): a flood of one-off shapes that share their
# end words costs a bounded scan per line instead of one that grows with the flood.
SCAN_MAX = 1024
# Capitalized words (GET/POST, Started/Stopped, LOOKING) are mostly the constants
# that name events: a position holding one needs this many times the evidence.
CAPITAL_EVIDENCE = 2


@dataclass(slots=True)
class Template:
    id: str
    units: list[str]
    seq: int
    first_seen: float
    last_seen: float
    count: int = 0
    services: dict[str, int] = field(default_factory=dict)
    text: str = ""
    var: list[bool] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    # Set on an alias: a pattern kept after its template merged into `owner`.
    owner: str | None = None
    bucket_keys: tuple[tuple[int, str, str], ...] = ()
    skeletons: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.text:
            self.text = " ".join(self.units) or EMPTY_TEMPLATE
        if not self.var:
            self.var = [is_value(u) for u in self.units]
        if not self.keys:
            self.keys = [key(u) for u in self.units]

    def state(self) -> dict[str, object]:
        """What a snapshot keeps of it (the rest is derived again on import)."""
        return {
            "id": self.id,
            "units": self.units,
            "seq": self.seq,
            "count": self.count,
            "services": self.services,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(slots=True, frozen=True)
class TemplateInfo:
    id: str
    text: str
    count: int
    services: dict[str, int]
    first_seen: float
    last_seen: float


def template_id(first_text: str) -> str:
    """Content-derived, so the same first variant gets the same id in every run."""
    return hashlib.blake2b(first_text.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()


class TemplateMiner:
    """Learns templates from a stream; see the module docstring for the tiers.

    The grouping rule: value slots (placeholders such as `<NUM>`, words holding
    one like `blk_<NUM>`, slots that already varied, `key=` values) take any value;
    plain words may differ only once `variable_min_values` distinct words were seen
    at that position among otherwise-identical lines (twice as many for
    capitalized keywords). Not thread-safe: one owner (the pipeline worker) at a
    time.
    """

    def __init__(self, settings: TemplateSettings | None = None):
        self.settings = settings or TemplateSettings()
        self._templates: dict[str, Template] = {}
        self._buckets: dict[tuple[int, str, str], list[Template]] = {}
        self._merged: dict[str, str] = {}
        # Patterns of templates that merged into another, kept so lines of their
        # shape still find the survivor; owner id -> its alias ids.
        self._aliases: dict[str, Template] = {}
        self._aliases_of: dict[str, list[str]] = {}
        # Skeleton (constant parts in order) -> id of a pattern that has it.
        self._skeletons: dict[tuple[str, ...], str] = {}
        self._shape: dict[bytes, str] = {}
        self._loose: dict[bytes, str] = {}
        self._exact: dict[str, str] = {}
        self._seq = 0
        self._service_templates: Counter[str] = Counter()
        self.version = 0  # bumps on every change to the template set (for snapshots)
        # Incremental snapshots: serialized templates, re-encoded only once touched.
        self._encoded: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self.lines = 0

    # -- queries -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._templates)

    def resolve(self, tid: str) -> str:
        """Follows merges old → new; unknown ids come back unchanged."""
        seen = 0
        while tid in self._merged and seen < 64:
            tid = self._merged[tid]
            seen += 1
        return tid

    def text(self, tid: str) -> str | None:
        t = self._templates.get(self.resolve(tid))
        return t.text if t is not None else None

    def templates(self) -> list[TemplateInfo]:
        """A copy of every template's info. The miner belongs to the pipeline worker:
        callers on other threads hold `Pipeline.lock` while calling this."""
        return [
            TemplateInfo(t.id, t.text, t.count, dict(t.services), t.first_seen, t.last_seen)
            for t in self._templates.values()
        ]

    def get(self, tid: str) -> TemplateInfo | None:
        t = self._templates.get(self.resolve(tid))
        if t is None:
            return None
        return TemplateInfo(t.id, t.text, t.count, dict(t.services), t.first_seen, t.last_seen)

    def merges(self) -> dict[str, str]:
        return dict(self._merged)

    def service_template_counts(self) -> dict[str, int]:
        return dict(self._service_templates)

    def match(self, message: str) -> tuple[str, str] | None:
        """The template `message` belongs to, without learning anything."""
        line = masking.clean(message, self.settings.max_line_bytes)
        masked = masking.mask(line)
        tid = self._exact.get(masked)
        if tid is None:
            found, _ = self._scan(self._units(masked))
            if found is None:
                return None
            tid = self._owner(found).id
        t = self._templates.get(self.resolve(tid))
        return None if t is None else (t.id, t.text)

    # -- learning ----------------------------------------------------------------------

    def add(self, message: str, service: str = "", ts: float | None = None) -> tuple[str, str]:
        return self.add_batch([message], [service], None if ts is None else [ts])[0]

    def add_batch(
        self,
        messages: Sequence[str],
        services: Sequence[str] | None = None,
        ts: Sequence[float] | float | None = None,
    ) -> list[tuple[str, str]]:
        ids, texts = self.mine(messages, services, ts)
        return list(zip(ids, texts, strict=True))

    def mine(
        self,
        messages: Sequence[str],
        services: Sequence[str] | None = None,
        ts: Sequence[float] | float | None = None,
    ) -> tuple[list[str], list[str]]:
        """`add_batch` as two aligned lists (template ids, template texts): what the
        pipeline stage stores, without a tuple per record."""
        ids = self.assign(messages, ts)
        templates = self._templates
        text_of = {tid: templates[tid].text for tid in set(ids)}
        texts = list(map(text_of.__getitem__, ids))
        self._count(ids, services, ts)
        return ids, texts

    def assign(
        self, messages: Sequence[str], ts: Sequence[float] | float | None = None
    ) -> list[str]:
        """Template id per message (learning, but not counting). `ts` only dates
        the templates this call creates."""
        if not messages:
            return []
        lines, keys = masking.prepare(messages, self.settings.max_line_bytes)
        shape = self._shape
        ids: list[str | None] = list(map(shape.get, keys))
        if None in ids:
            misses = [i for i, tid in enumerate(ids) if tid is None]
            if len(shape) + len(misses) > SHAPE_CACHE_MAX:
                shape.clear()
            # Tier 1b: same shape up to the length of each number ("took 5 ms" and
            # "took 125 ms"): one regex pass over the missed keys only.
            folded = masking.fold_keys([keys[i] for i in misses])
            loose = self._loose
            if len(loose) + len(misses) > SHAPE_CACHE_MAX:
                loose.clear()
            unknown: list[int] = []
            unknown_folded: list[bytes] = []
            repeats: list[tuple[int, bytes]] = []  # same loose key as an unknown line
            pending: set[bytes] = set()
            for i, fk in zip(misses, folded, strict=True):
                tid = loose.get(fk)
                if tid is not None:
                    ids[i] = tid
                    shape[keys[i]] = tid
                elif fk in pending:
                    repeats.append((i, fk))
                else:
                    pending.add(fk)
                    unknown.append(i)
                    unknown_folded.append(fk)
            if unknown:
                masked = masking.mask_many([lines[i] for i in unknown], [keys[i] for i in unknown])
                exact = self._exact
                learned: dict[bytes, str] = {}
                for i, fk, m in zip(unknown, unknown_folded, masked, strict=True):
                    tid = exact.get(m)
                    if tid is None:
                        when = (
                            time.time()
                            if ts is None
                            else float(ts)
                            if isinstance(ts, float | int)
                            else ts[i]
                        )
                        tid = self._learn(m, when)
                        if len(exact) >= EXACT_CACHE_MAX:
                            exact.clear()
                        exact[m] = tid
                    ids[i] = tid
                    shape[keys[i]] = tid
                    loose[fk] = learned[fk] = tid
                for i, fk in repeats:
                    ids[i] = shape[keys[i]] = learned[fk]
        merged = self._merged
        if merged and not merged.keys().isdisjoint(ids):
            # Cache entries written before a merge still name the younger id.
            ids = [self.resolve(t) for t in ids]  # type: ignore[arg-type]
        self.lines += len(ids)
        return ids  # type: ignore[return-value]

    def _count(
        self,
        ids: list[str],
        services: Sequence[str] | None,
        ts: Sequence[float] | float | None,
    ) -> None:
        templates = self._templates
        dirty = self._dirty
        dirty.update(ids)
        if len(dirty) > 2 * self.settings.max_templates:  # nobody snapshots: stay bounded
            dirty.clear()
            self._encoded.clear()
        if services is None or (services and services.count(services[0]) == len(services)):
            service = services[0] if services else ""
            pairs = ((tid, service, n) for tid, n in Counter(ids).items())
        else:
            pairs = (
                (tid, service, n)
                for (tid, service), n in Counter(zip(ids, services, strict=True)).items()
            )
        for tid, service, n in pairs:
            t = templates[tid]
            t.count += n
            seen = t.services.get(service)
            if seen is None and len(t.services) >= MAX_SERVICES_PER_TEMPLATE:
                service = OTHER_SERVICE
                seen = t.services.get(service)
            if seen is None:
                t.services[service] = n
                self._service_templates[service] += 1
            else:
                t.services[service] = seen + n
        if ts is None or isinstance(ts, float | int):
            now = time.time() if ts is None else float(ts)
            for tid in set(ids):
                t = templates[tid]
                if now > t.last_seen:
                    t.last_seen = now
        else:
            for tid, when in dict(zip(ids, ts, strict=True)).items():
                t = templates[tid]
                if when > t.last_seen:
                    t.last_seen = when
                if when < t.first_seen:
                    t.first_seen = when
        if len(templates) > self.settings.max_templates:
            self._evict()
        self._prune_merges()

    def _units(self, masked: str) -> list[str]:
        toks = tokens(masked)
        limit = self.settings.max_tokens
        if len(toks) > limit:
            toks = toks[: limit - 1]
            toks.append(TRUNCATED)
        return toks

    def _owner(self, t: Template) -> Template:
        """The live template a pattern belongs to (itself unless it is an alias)."""
        if t.owner is None:
            return t
        return self._templates[self.resolve(t.id)]

    def _candidates(self, toks: list[str]) -> list[Template]:
        """Patterns of the same length sharing the first or the last constant word:
        either end may be the one that varies (a program name before the message, a
        status after it), not both."""
        first, last = _bucket_keys(toks)
        buckets = self._buckets
        a = buckets.get(first, ())[:SCAN_MAX]
        b = buckets.get(last, ())[:SCAN_MAX] if last != first else ()
        if not b:
            return list(a)
        if not a:
            return list(b)
        seen = {id(t) for t in a}
        return [*a, *(t for t in b if id(t) not in seen)]

    def _scan(
        self, toks: list[str]
    ) -> tuple[Template | None, dict[tuple[int, ...], list[Template]]]:
        """The pattern that takes `toks` with value differences only (most constant
        agreement wins), and the near misses grouped by the plain words where they
        differ.

        Per position: equal tokens agree; different keys never match; the same key
        (`user=root` / `user=ftp`) or a value on either side (`<HOST>` / `LOCAL(<NUM>)`,
        a slot that already varied / any word) is a value difference; two different
        plain words are a word difference, which needs evidence from siblings.
        """
        n = len(toks)
        line_var = [is_value(u) for u in toks]
        line_keys = [key(u) for u in toks]
        similarity = self.settings.similarity
        max_words = max(1, int(n * (1.0 - similarity)))
        best: Template | None = None
        best_same = -1
        siblings: dict[tuple[int, ...], list[Template]] = {}
        for cand in self._candidates(toks):
            same = anchors = 0
            words: list[int] = []
            cvar, ckeys = cand.var, cand.keys
            for i, a in enumerate(cand.units):
                b = toks[i]
                if not cvar[i]:
                    anchors += 1
                    if a == b:
                        same += 1
                        continue
                elif a == b:
                    continue
                ka = ckeys[i]
                if cvar[i] and not ka:
                    continue  # a slot that varied takes a value of any shape
                if ka != line_keys[i]:
                    break
                if cvar[i] or line_var[i]:
                    if not cvar[i] and (
                        (i and toks[i - 1] == a) or (i + 1 < n and toks[i + 1] == a)
                    ):
                        break  # the constant moved one place: a shifted line, not a value
                    same += bool(ka) and not cvar[i]
                elif ka.endswith("=") or (i and toks[i - 1] == "=" == cand.units[i - 1]):
                    same += 1  # the value of `key=` or of `key = value`
                elif len(words) < max_words:
                    words.append(i)
                else:
                    break
            else:
                if anchors and (
                    not same or same < (similarity if words else VALUE_AGREEMENT) * anchors
                ):
                    continue
                if not words:
                    if same > best_same:
                        best, best_same = cand, same
                else:
                    siblings.setdefault(tuple(words), []).append(cand)
        return best, siblings

    def _learn(self, masked: str, when: float) -> str:
        toks = self._units(masked)
        best, siblings = self._scan(toks)
        if best is not None:
            if not _covers(best.units, toks):
                best = self._generalize(best, toks)
            return self.resolve(best.id)
        need = self.settings.variable_min_values - 1
        for positions, group in siblings.items():
            if len(group) < need or not self._may_vary(toks, group, positions):
                continue
            if len(group) + 1 < CAPITAL_EVIDENCE * (need + 1) and any(
                _capitalized(toks[i]) or any(_capitalized(t.units[i]) for t in group)
                for i in positions
            ):
                continue
            group.sort(key=lambda t: t.seq)
            survivor = group[0]
            for other in group[1:]:
                if self._live(other):
                    survivor = self._generalize(survivor, other.units)
            return self.resolve(self._generalize(survivor, toks).id)
        return self.resolve(self._create(toks, when).id)

    def _live(self, t: Template) -> bool:
        """Whether a pattern is still indexed (merging may retire one mid-loop)."""
        return bool(t.bucket_keys)

    @staticmethod
    def _may_vary(toks: list[str], group: list[Template], positions: tuple[int, ...]) -> bool:
        """Plain words become `<*>` only when each near miss brought its own value:
        `variable_min_values` distinct words at the same positions of otherwise
        matching lines."""
        for i in positions:
            values = {toks[i]}
            for t in group:
                values.add(t.units[i])
            if len(values) <= len(group):
                return False  # two near misses share a value: not a free slot
        return True

    def _create(self, toks: list[str], now: float) -> Template:
        self._seq += 1
        text = " ".join(toks) or EMPTY_TEMPLATE
        base = template_id(text)
        tid = base
        n = 1
        while tid in self._templates or tid in self._merged or tid in self._aliases:
            n += 1
            tid = f"{base}-{n}"
        t = Template(id=tid, units=list(toks), seq=self._seq, first_seen=now, last_seen=now)
        self._templates[tid] = t
        self._index(t)
        self.version += 1
        self._register_skeleton(t)
        return t

    def _index(self, t: Template) -> None:
        first, last = _bucket_keys(t.units)
        keys = (first,) if first == last else (first, last)
        t.bucket_keys = keys
        for k in keys:
            self._buckets.setdefault(k, []).append(t)

    def _unindex(self, t: Template) -> None:
        """Take a pattern out of its buckets; an emptied bucket is deleted, so a flood
        of one-off shapes leaves nothing behind once its templates are evicted."""
        buckets = self._buckets
        for k in t.bucket_keys:
            bucket = buckets.get(k)
            if bucket is None:
                continue
            for i, other in enumerate(bucket):
                if other is t:
                    del bucket[i]
                    break
            if not bucket:
                del buckets[k]
        t.bucket_keys = ()
        skeletons = self._skeletons
        for skel in t.skeletons:
            if skeletons.get(skel) == t.id:
                del skeletons[skel]
        t.skeletons = []

    def _register_skeleton(self, t: Template) -> None:
        """Templates whose constant parts read the same, in the same order, are one
        event that differs only in its values: an optional value group
        (`(1.16 KB)`), an empty field, a list one item longer. Unite them."""
        skel = skeleton(t.units)
        if not skel or skel in t.skeletons:
            return
        t.skeletons.append(skel)
        other_id = self._skeletons.get(skel)
        mine = self._owner(t)
        if other_id is not None:
            other_owner = self._templates.get(self.resolve(other_id))
            if other_owner is not None and other_owner is not mine:
                self._unite(mine, other_owner)
                return
        self._skeletons[skel] = t.id

    def _generalize(self, t: Template, toks: list[str]) -> Template:
        """Widen pattern `t` to also cover `toks`, then fold in any pattern it now
        covers (the older id survives). Returns the pattern that covers `toks`."""
        units = t.units
        for i, (a, b) in enumerate(zip(units, toks, strict=True)):
            if not covers(a, b):
                units[i] = widen(a, b)
                t.var[i] = True
                t.keys[i] = key(units[i])
        t.text = " ".join(units) or EMPTY_TEMPLATE
        self._unindex(t)
        self._index(t)
        self.version += 1
        owner = self._owner(t)
        self._dirty.add(owner.id)
        if owner is t:
            pass
        elif len(owner.units) == len(units) and _covers(units, owner.units):
            owner.units, owner.var, owner.keys = list(units), list(t.var), list(t.keys)
            owner.text = t.text
        for k in t.bucket_keys:
            for other in list(self._buckets.get(k, ())):
                if other is t or not other.bucket_keys or len(other.units) != len(units):
                    continue
                if not _covers(units, other.units):
                    continue
                other_owner = self._owner(other)
                mine = self._owner(t)
                if other_owner is not mine:
                    self._unite(mine, other_owner)
                elif other is not mine:
                    self._unindex(other)
        if t.bucket_keys:
            self._register_skeleton(t)
        return t

    def _unite(self, a: Template, b: Template) -> Template:
        """Merge two live templates; the older id survives and takes the younger's
        patterns as aliases, so lines of either shape keep resolving to it."""
        old, young = (a, b) if a.seq < b.seq else (b, a)
        self._dirty.add(old.id)
        old.count += young.count
        for service, n in young.services.items():
            if service in old.services:
                old.services[service] += n
                left = self._service_templates[service] - 1
                if left > 0:
                    self._service_templates[service] = left
                else:
                    del self._service_templates[service]
            else:
                old.services[service] = n
        old.first_seen = min(old.first_seen, young.first_seen)
        old.last_seen = max(old.last_seen, young.last_seen)
        del self._templates[young.id]
        self._encoded.pop(young.id, None)
        self._dirty.discard(young.id)
        if len(young.units) == len(old.units) and _covers(young.units, old.units):
            # The younger shape is the wider one: the surviving id takes it.
            old.units, old.var, old.keys = list(young.units), list(young.var), list(young.keys)
            old.text = young.text
            self._unindex(old)
            self._index(old)
            self._unindex(young)
        elif len(young.units) == len(old.units) and _covers(old.units, young.units):
            self._unindex(young)
        young.owner = old.id
        self._aliases[young.id] = young
        moved = self._aliases_of.pop(young.id, [])
        moved.append(young.id)
        for alias_id in moved:
            alias = self._aliases.get(alias_id)
            if alias is not None:
                alias.owner = old.id
        self._aliases_of.setdefault(old.id, []).extend(moved)
        merged = self._merged
        merged[young.id] = old.id
        for src, dst in merged.items():
            if dst == young.id:
                merged[src] = old.id
        self.version += 1
        if not old.skeletons and old.bucket_keys:
            self._register_skeleton(old)  # re-indexed above with the wider shape
        return old

    def _forget_alias(self, alias_id: str) -> None:
        alias = self._aliases.pop(alias_id, None)
        if alias is not None:
            self._unindex(alias)

    def _drop(self, t: Template) -> None:
        """Remove a live template with its aliases, index entries and merge records;
        cached lines that pointed at any of them are forgotten."""
        del self._templates[t.id]
        self._unindex(t)
        for alias_id in self._aliases_of.pop(t.id, ()):
            self._forget_alias(alias_id)
        self._encoded.pop(t.id, None)
        self._dirty.discard(t.id)
        for service in t.services:
            left = self._service_templates[service] - 1
            if left > 0:
                self._service_templates[service] = left
            else:
                del self._service_templates[service]
        self.version += 1

    def _evict(self) -> None:
        """Under pressure, forget the rarest, stalest tenth of the templates."""
        limit = self.settings.max_templates
        keep = limit - max(1, limit // 10)
        ranked = sorted(self._templates.values(), key=lambda t: (t.count, t.last_seen))
        for t in ranked[: len(ranked) - keep]:
            self._drop(t)
        live = self._templates
        for k in [k for k, v in self._merged.items() if v not in live]:
            del self._merged[k]
        self._forget_lines()

    def _prune_merges(self) -> None:
        """Keep the merge record bounded: the oldest merges (and the alias patterns
        they carried) go first."""
        merged = self._merged
        limit = self.settings.max_templates
        if len(merged) <= limit:
            return
        while len(merged) > limit:
            old = next(iter(merged))
            owner = merged.pop(old)
            self._forget_alias(old)
            aliases = self._aliases_of.get(owner)
            if aliases is not None and old in aliases:
                aliases.remove(old)
        self._forget_lines()

    def _forget_lines(self) -> None:
        self._shape.clear()
        self._loose.clear()
        self._exact.clear()

    # -- persistence -------------------------------------------------------------------

    def export_state(self) -> dict[str, object]:
        return {
            "format": 1,
            "seq": self._seq,
            "lines": self.lines,
            "templates": [t.state() for t in self._templates.values()],
            "merged": self._merged,
            **self._export_extra(),
        }

    def _export_extra(self) -> dict[str, object]:
        """Format-1 additions: the tokenizer generation and the alias patterns."""
        return {
            "tokens": TOKENS_VERSION,
            "aliases": [
                {"id": a.id, "units": a.units, "seq": a.seq, "owner": a.owner}
                for a in self._aliases.values()
                if a.bucket_keys
            ],
        }

    def export_bytes(self) -> bytes:
        """`export_state` as JSON, re-encoding only templates touched since the last
        call: cheap enough to run every few seconds with thousands of templates."""
        encoded, dirty = self._encoded, self._dirty
        parts = []
        for t in self._templates.values():
            data = encoded.get(t.id)
            if data is None or t.id in dirty:
                data = orjson.dumps(t.state())
                encoded[t.id] = data
            parts.append(data)
        dirty.clear()
        if len(encoded) > 2 * len(self._templates) + 1024:
            live = self._templates
            self._encoded = {k: v for k, v in encoded.items() if k in live}
        head = orjson.dumps(
            {
                "format": 1,
                "seq": self._seq,
                "lines": self.lines,
                "merged": self._merged,
                **self._export_extra(),
            }
        )
        return head[:-1] + b',"templates":[' + b",".join(parts) + b"]}"

    def import_state(self, state: dict[str, object]) -> None:
        """Replace everything with a snapshot's content; on a malformed snapshot the
        miner is left as it was (the caller logs and carries on)."""
        if state.get("format") != 1:
            raise ValueError(f"unsupported template snapshot format: {state.get('format')!r}")
        raw = state["templates"]
        merged = state.get("merged") or {}
        if not isinstance(raw, list) or not isinstance(merged, dict):
            raise ValueError("template snapshot: 'templates' must be a list, 'merged' a map")
        templates: dict[str, Template] = {}
        aliases: dict[str, Template] = {}
        # Snapshots from before whitespace tokens kept separators inside units.
        retokenize = state.get("tokens") != TOKENS_VERSION
        raw_aliases = state.get("aliases") or []
        if not isinstance(raw_aliases, list):
            raise ValueError("template snapshot: 'aliases' must be a list")

        def units_of(item: dict[str, object]) -> list[str]:
            units = [str(u) for u in item["units"]]  # type: ignore[attr-defined]
            return tokens("".join(units)) if retokenize else units

        try:
            for item in raw_aliases:
                a = Template(
                    id=str(item["id"]),
                    units=units_of(item),
                    seq=int(item["seq"]),
                    first_seen=0.0,
                    last_seen=0.0,
                    owner=str(item["owner"]),
                )
                aliases[a.id] = a
            for item in sorted(raw, key=lambda d: d["seq"]):
                t = Template(
                    id=str(item["id"]),
                    units=units_of(item),
                    seq=int(item["seq"]),
                    first_seen=float(item["first_seen"]),
                    last_seen=float(item["last_seen"]),
                    count=int(item["count"]),
                    services={str(k): int(v) for k, v in item["services"].items()},
                )
                templates[t.id] = t
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"template snapshot: malformed template entry ({exc!r})") from None
        seq, lines = state.get("seq", 0), state.get("lines", 0)
        self._templates = templates
        self._buckets = {}
        self._skeletons = {}
        self._service_templates = Counter()
        self._merged = {str(k): str(v) for k, v in merged.items()}
        for t in templates.values():
            self._index(t)
            self._service_templates.update(t.services.keys())
        self._aliases = {}
        self._aliases_of = {}
        for a in aliases.values():
            owner = self.resolve(a.id)
            if owner not in templates:
                continue
            a.owner = owner
            self._aliases[a.id] = a
            self._aliases_of.setdefault(owner, []).append(a.id)
            self._index(a)
        for t in [*templates.values(), *self._aliases.values()]:
            skel = skeleton(t.units)
            if skel:
                t.skeletons.append(skel)
                self._skeletons.setdefault(skel, t.id)
        self._encoded = {}
        self._dirty = set()
        self._shape.clear()
        self._loose.clear()
        self._exact.clear()
        self._seq = seq if isinstance(seq, int) else len(templates)
        self.lines = lines if isinstance(lines, int) else 0
        self.version += 1

    def export_services(self, services: set[str]) -> dict[str, list[dict[str, object]]]:
        """The templates each of `services` has a count in, with that service's count:
        what a Kafka member hands over with the service's partition (one pass)."""
        out: dict[str, list[dict[str, object]]] = {s: [] for s in services}
        for t in self._templates.values():
            for service, n in t.services.items():
                found = out.get(service)
                if found is not None:
                    found.append(
                        {
                            "id": t.id,
                            "units": t.units,
                            "count": n,
                            "first_seen": t.first_seen,
                            "last_seen": t.last_seen,
                        }
                    )
        return out

    def import_service(self, service: str, entries: list[dict[str, object]]) -> int:
        """Adopt one service's templates from another miner (`export_services`): a
        template this miner lacks is added under the same id (ids are derived from
        the first text, so both miners name an event alike); the service's count is
        replaced, not added, so importing twice changes nothing. Returns how many
        templates were new. Raises ValueError on a malformed entry, before changing
        anything."""
        parsed: list[tuple[str, list[str], int, float, float]] = []
        try:
            for item in entries:
                units = [str(u) for u in item["units"]]  # type: ignore[attr-defined]
                parsed.append(
                    (
                        str(item["id"]),
                        units,
                        int(item["count"]),  # type: ignore[call-overload]
                        float(item["first_seen"]),  # type: ignore[arg-type]
                        float(item["last_seen"]),  # type: ignore[arg-type]
                    )
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"service templates: malformed entry ({exc!r})") from None
        added: list[Template] = []
        for tid, units, n, first, last in parsed:
            tid = self.resolve(tid)
            t = self._templates.get(tid)
            if t is None:
                if tid in self._aliases:
                    continue  # an alias whose owner is gone: its lines re-learn
                self._seq += 1
                t = Template(id=tid, units=units, seq=self._seq, first_seen=first, last_seen=last)
                self._templates[tid] = t
                self._index(t)
                added.append(t)
            old = t.services.get(service)
            if old is None:
                self._service_templates[service] += 1
            t.services[service] = n
            t.count += n - (old or 0)
            t.first_seen = min(t.first_seen, first)
            t.last_seen = max(t.last_seen, last)
            self._dirty.add(tid)
        for t in added:
            if t.bucket_keys:  # a skeleton shared with a local template is one event
                self._register_skeleton(t)
        self.version += 1
        if len(self._templates) > self.settings.max_templates:
            self._evict()
        return len(added)

    def save(self, path: str | Path) -> None:
        from .persistence import save_snapshot

        save_snapshot(self, path)

    def load(self, path: str | Path) -> bool:
        """Restore from a snapshot file or state dir; False if there is none."""
        from .persistence import load_snapshot

        return load_snapshot(self, path)


def _bucket_keys(toks: list[str]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """Length plus the first and the last constant word: a line is compared only
    with patterns of its length sharing one of them (Drain's insight that constant
    words name the event, without trusting one end alone)."""
    words = [u for u in toks if not is_value(u)]
    n = len(toks)
    if not words:
        return (n, "f", "<*>"), (n, "f", "<*>")
    return (n, "f", words[0]), (n, "l", words[-1])


def _capitalized(word: str) -> bool:
    """A capitalized plain word written as a keyword (`Started`, `GET`,
    `SUCCESS_CONTAINER`), not an identifier-shaped name (`Dropbox.exe`,
    `WindowsUpdateAgent`, `a/b`)."""
    core = word.strip("()[]{}\"',;:.!?")
    letters = core.replace("_", "").replace("-", "")
    if not letters.isalpha() or not core[:1].isupper():
        return False
    return letters.isupper() or letters[1:].islower()


def _covers(template_units: list[str], toks: list[str]) -> bool:
    return all(map(covers, template_units, toks))
