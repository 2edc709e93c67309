"""Streaming template miner: masked line → template id, learning as it goes.

Three tiers, cheapest first:

1. shape cache: line with every digit written "0" → template id (one dict lookup,
   keys made for a whole batch at once); on a miss, the same key with each run of
   digits folded to one "0" (numbers of another length);
2. exact cache: fully masked line → template id;
3. learning: split into units, compare with templates of the same length, and
   either generalize the closest (positions that differ become `<*>`) or start a
   new template.

A template keeps its id for life, however much it generalizes. When two
templates become identical the younger one is merged into the older and the
mapping is kept, so ids written into annotations or feedback stay resolvable.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..config import Templates as TemplateSettings
from . import masking
from .tokenize import SEPARATORS, WILDCARD, separator, units, word

EMPTY_TEMPLATE = "<EMPTY>"
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

    def __post_init__(self) -> None:
        if not self.text:
            self.text = "".join(self.units).rstrip() or EMPTY_TEMPLATE
        if not self.var:
            self.var = [_is_variable(u) for u in self.units]


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

    The grouping rule: value slots (placeholders such as `<NUM>`, or words holding
    one, like `blk_<NUM>`) may differ freely between lines of one template; literal
    words may differ only once `variable_min_values` distinct words were seen at
    that position among otherwise-identical lines, and never when capitalized or
    the value of a `key=`. Lines of different length or first word never share a
    template. Not thread-safe: one owner (the pipeline worker) at a time.
    """

    def __init__(self, settings: TemplateSettings | None = None):
        self.settings = settings or TemplateSettings()
        self._templates: dict[str, Template] = {}
        self._buckets: dict[tuple[int, str], list[Template]] = {}
        self._merged: dict[str, str] = {}
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
            tid = found.id
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

    def _units(self, masked: str) -> list[str]:
        toks = units(masked.strip())
        limit = self.settings.max_tokens
        if len(toks) > limit:
            toks = toks[: limit - 1]
            toks.append(TRUNCATED)
        return toks

    def _bucket(self, toks: list[str]) -> list[Template]:
        return self._buckets.setdefault(_bucket_key(toks), [])

    def _scan(
        self, toks: list[str]
    ) -> tuple[Template | None, dict[tuple[int, ...], list[Template]]]:
        """The template that takes `toks` by differing only in variable positions
        (most literal agreement wins), and the near misses grouped by the literal
        positions where they differ."""
        n = len(toks)
        is_var = [_is_variable(u) for u in toks]
        max_words = max(1, int(n * (1.0 - self.settings.similarity)))
        best: Template | None = None
        best_same = -1
        siblings: dict[tuple[int, ...], list[Template]] = {}
        for cand in self._buckets.get(_bucket_key(toks), ()):
            same = 0
            words: list[int] = []
            cvar = cand.var
            for i, a in enumerate(cand.units):
                b = toks[i]
                if a == b:
                    same += 1
                elif cvar[i] and (is_var[i] or a.startswith(WILDCARD)):
                    continue
                elif len(words) < max_words:
                    words.append(i)
                else:
                    break
            else:
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
            return best.id
        need = self.settings.variable_min_values - 1
        for positions, group in siblings.items():
            if len(group) < need or not self._may_vary(toks, group, positions):
                continue
            group.sort(key=lambda t: t.seq)
            survivor = group[0]
            for other in group[1:]:
                survivor = self._generalize(survivor, other.units)
            return self._generalize(survivor, toks).id
        return self._create(toks, when).id

    @staticmethod
    def _may_vary(toks: list[str], group: list[Template], positions: tuple[int, ...]) -> bool:
        """Literal words become `<*>` only when several distinct values were seen, and
        never for capitalized words (GET/POST, Started/Stopped, SCREEN_ON) or
        `key=value` values, which in practice name different events rather than vary
        within one."""
        for i in positions:
            values = {word(toks[i])}
            for t in group:
                values.add(word(t.units[i]))
            if len(values) <= len(group):
                return False  # two near misses share a value: not a free slot
            for v in values:
                if v[:1].isupper():
                    return False
            if i and toks[i - 1].endswith("="):
                return False
        return True

    def _create(self, toks: list[str], now: float) -> Template:
        self._seq += 1
        text = "".join(toks).rstrip() or EMPTY_TEMPLATE
        base = template_id(text)
        tid = base
        n = 1
        while tid in self._templates or tid in self._merged:
            n += 1
            tid = f"{base}-{n}"
        t = Template(id=tid, units=list(toks), seq=self._seq, first_seen=now, last_seen=now)
        self._templates[tid] = t
        self._bucket(toks).append(t)
        self.version += 1
        return t

    def _generalize(self, t: Template, toks: list[str]) -> Template:
        """Widen `t` to also cover `toks`, then fold in any template it now covers
        (the older id survives). Returns the surviving template."""
        for i, (a, b) in enumerate(zip(t.units, toks, strict=True)):
            if a != b and not a.startswith(WILDCARD):
                sep = separator(a)
                t.units[i] = WILDCARD + sep
                t.var[i] = True
        t.text = "".join(t.units).rstrip() or EMPTY_TEMPLATE
        self.version += 1
        self._dirty.add(t.id)
        survivor = t
        for other in list(self._bucket(t.units)):
            if (
                other is survivor
                or self._templates.get(other.id) is not other
                or not _covers(survivor.units, other.units)
            ):
                continue
            if other.seq < survivor.seq:
                other.units, other.var = list(survivor.units), list(survivor.var)
                other.text = survivor.text
                self._dirty.add(other.id)
                self._merge(survivor, other)
                survivor = other
            else:
                self._merge(other, survivor)
        return survivor

    def _merge(self, young: Template, old: Template) -> None:
        self._dirty.add(old.id)
        old.count += young.count
        for service, n in young.services.items():
            if service in old.services:
                old.services[service] += n
                self._service_templates[service] -= 1
            else:
                old.services[service] = n
        old.first_seen = min(old.first_seen, young.first_seen)
        old.last_seen = max(old.last_seen, young.last_seen)
        self._drop(young, forget_lines=False)
        merged = self._merged
        merged[young.id] = old.id
        for src, dst in merged.items():
            if dst == young.id:
                merged[src] = old.id
        if len(merged) > self.settings.max_templates:
            while len(merged) > self.settings.max_templates:
                del merged[next(iter(merged))]  # oldest merge first
            self._shape.clear()  # cached lines may name a forgotten id
            self._loose.clear()
            self._exact.clear()

    def _drop(self, t: Template, forget_lines: bool = True) -> None:
        """Remove a template. Cached lines that pointed at it are forgotten, unless
        it was merged: then they still resolve through the merge map."""
        del self._templates[t.id]
        bucket = self._bucket(t.units)
        for i, other in enumerate(bucket):
            if other is t:
                del bucket[i]
                break
        if forget_lines:
            self._shape.clear()
            self._loose.clear()
            self._exact.clear()
        self.version += 1

    def _evict(self) -> None:
        """Under pressure, forget the rarest, stalest tenth of the templates."""
        limit = self.settings.max_templates
        keep = limit - max(1, limit // 10)
        ranked = sorted(self._templates.values(), key=lambda t: (t.count, t.last_seen))
        for t in ranked[: len(ranked) - keep]:
            for service in t.services:
                self._service_templates[service] -= 1
            self._drop(t)
        dead = [k for k, v in self._merged.items() if v not in self._templates]
        for k in dead:
            del self._merged[k]

    # -- persistence -------------------------------------------------------------------

    def export_state(self) -> dict[str, object]:
        return {
            "format": 1,
            "seq": self._seq,
            "lines": self.lines,
            "templates": [
                {
                    "id": t.id,
                    "units": t.units,
                    "seq": t.seq,
                    "count": t.count,
                    "services": t.services,
                    "first_seen": t.first_seen,
                    "last_seen": t.last_seen,
                }
                for t in self._templates.values()
            ],
            "merged": self._merged,
        }

    def export_bytes(self) -> bytes:
        """`export_state` as JSON, re-encoding only templates touched since the last
        call: cheap enough to run every few seconds with thousands of templates."""
        encoded, dirty = self._encoded, self._dirty
        parts = []
        for t in self._templates.values():
            data = encoded.get(t.id)
            if data is None or t.id in dirty:
                data = orjson.dumps(
                    {
                        "id": t.id,
                        "units": t.units,
                        "seq": t.seq,
                        "count": t.count,
                        "services": t.services,
                        "first_seen": t.first_seen,
                        "last_seen": t.last_seen,
                    }
                )
                encoded[t.id] = data
            parts.append(data)
        dirty.clear()
        if len(encoded) > 2 * len(self._templates) + 1024:
            live = self._templates
            self._encoded = {k: v for k, v in encoded.items() if k in live}
        head = orjson.dumps(
            {"format": 1, "seq": self._seq, "lines": self.lines, "merged": self._merged}
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
        try:
            for item in sorted(raw, key=lambda d: d["seq"]):
                t = Template(
                    id=str(item["id"]),
                    units=[str(u) for u in item["units"]],
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
        self._service_templates = Counter()
        for t in templates.values():
            self._bucket(t.units).append(t)
            self._service_templates.update(t.services.keys())
        self._merged = {str(k): str(v) for k, v in merged.items()}
        self._encoded = {}
        self._dirty = set()
        self._shape.clear()
        self._loose.clear()
        self._exact.clear()
        self._seq = seq if isinstance(seq, int) else len(templates)
        self.lines = lines if isinstance(lines, int) else 0
        self.version += 1

    def save(self, path: str | Path) -> None:
        from .persistence import save_snapshot

        save_snapshot(self, path)

    def load(self, path: str | Path) -> bool:
        """Restore from a snapshot file or state dir; False if there is none."""
        from .persistence import load_snapshot

        return load_snapshot(self, path)


_PLACEHOLDER = re.compile(r"<[A-Z*…]+>")


def _is_variable(unit: str) -> bool:
    """A unit holding a placeholder (`<NUM>`, `blk_<NUM>`, `<*>`) is a value slot."""
    return "<" in unit and _PLACEHOLDER.search(unit) is not None


def _bucket_key(toks: list[str]) -> tuple[int, str]:
    """Length plus the first literal word: the leading word names the event
    (Drain's insight), so lines that start differently never merge. Leading value
    slots (a timestamp or an address before the message) are skipped."""
    for unit in toks:
        if unit.strip(SEPARATORS) and not _is_variable(unit):
            return (len(toks), unit)
    return (len(toks), "<*>")


def _covers(template_units: list[str], toks: list[str]) -> bool:
    for a, b in zip(template_units, toks, strict=True):
        if a != b and not a.startswith(WILDCARD):
            return False
    return True
