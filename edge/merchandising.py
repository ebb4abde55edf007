"""Merchandising: what a shop decides over the ranker. Pins put items at fixed positions,
boosts and buries multiply the ranker's probability by category, brand or tag, filters never
show some categories, brands or tags, and `only` shows nothing else (a category page).

A policy comes from the bundle (a build config's `[merchandising]`, in the manifest's
`models.merchandising`) and from a request's `merchandising`, which adds to it: every filter and
`only` of either applies, a request's factor for a name replaces the bundle's, and a request's
pin replaces the bundle's pin of the same item or position. Names are checked against the
bundle's catalog once, at load for the bundle's own policy and per request for a request's, and
compiled to small lookup tables over the codes, so applying a policy costs a gather per
candidate, never a pass over the catalog."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
import numpy as np
from msgspec import Meta, Struct

from edge.errors import ValidationError
from edge.model import ItemTable, Model

MAX_PINS = 50
MAX_VALUES = 100  # names per list or map
MAX_POSITION = 100  # a request's largest k
LISTED_NAMES = 20  # an error lists every allowed name up to this many, else the closest few
CLOSEST_NAMES = 5
COMPILED_POLICIES = 128  # request policies kept compiled per bundle (each some kB)

Name = Annotated[str, Meta(min_length=1, max_length=128)]
ItemId = Annotated[str, Meta(min_length=1, max_length=128)]
# boost multiplies the probability by the factor, bury divides it: 2 and 2 cancel out.
Factor = Annotated[float, Meta(ge=1.0, le=100.0)]
Position = Annotated[int, Meta(ge=1, le=MAX_POSITION)]
Dimension = Literal["categories", "brands", "tags"]
DIMENSIONS: tuple[Dimension, ...] = ("categories", "brands", "tags")


class Names(Struct, frozen=True, forbid_unknown_fields=True):
    """Categories, brands and tags by name (matched case-insensitively, as the build lower-cases
    labels)."""

    categories: Annotated[list[Name], Meta(max_length=MAX_VALUES)] = []
    brands: Annotated[list[Name], Meta(max_length=MAX_VALUES)] = []
    tags: Annotated[list[Name], Meta(max_length=MAX_VALUES)] = []

    def __bool__(self) -> bool:
        return bool(self.categories or self.brands or self.tags)


class Factors(Struct, frozen=True, forbid_unknown_fields=True):
    """A factor from 1 to 100 per category, brand or tag name."""

    categories: Annotated[dict[Name, Factor], Meta(max_length=MAX_VALUES)] = {}
    brands: Annotated[dict[Name, Factor], Meta(max_length=MAX_VALUES)] = {}
    tags: Annotated[dict[Name, Factor], Meta(max_length=MAX_VALUES)] = {}

    def __bool__(self) -> bool:
        return bool(self.categories or self.brands or self.tags)


class Merchandising(Struct, frozen=True, forbid_unknown_fields=True):
    """A merchandising policy, as a build config's `[merchandising]`, the manifest's
    `models.merchandising` and a request's `merchandising` all write it."""

    pins: Annotated[dict[ItemId, Position], Meta(max_length=MAX_PINS)] = {}  # item → position
    boost: Factors = Factors()  # the probability × factor
    bury: Factors = Factors()  # the probability ÷ factor
    filters: Names = Names()  # never shown
    only: Names = Names()  # shown only when matching every list given

    def __bool__(self) -> bool:
        return bool(self.pins or self.boost or self.bury or self.filters or self.only)

    @property
    def restricts(self) -> bool:
        """Whether it keeps some items out (a filter or an allow-list)."""
        return bool(self.filters or self.only)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Merchandising).decode


def policy_errors(spec: Merchandising) -> Iterator[tuple[str, str]]:
    """What is wrong with a policy on its own, without a catalog: (field below the policy,
    message) pairs."""
    by_position: dict[int, str] = {}
    for item, position in spec.pins.items():
        if position in by_position:
            yield (
                f'.pins["{item}"]',
                f"position {position} is already {by_position[position]!r}'s; each pinned "
                "item needs a position of its own",
            )
        by_position[position] = item
    for dimension in DIMENSIONS:
        boosted = {_key(n) for n in getattr(spec.boost, dimension)}
        for name in getattr(spec.bury, dimension):
            if _key(name) in boosted:
                yield (
                    f'.bury.{dimension}["{name}"]',
                    f"{name!r} is both boosted and buried; give it one factor",
                )


def _key(name: str) -> str:
    """A name as the build normalizes labels."""
    return name.strip().lower()


# ---------------------------------------------------------------- names to codes
class Vocabulary:
    """A bundle's category, brand and tag names, each to its code (built once per bundle)."""

    def __init__(self, items: ItemTable) -> None:
        self.items = items
        self.names: dict[Dimension, list[str]] = {
            "categories": list(items.category_names),
            "brands": list(items.brand_names),
            "tags": list(items.tag_names),
        }
        self.codes = {d: {n: i for i, n in enumerate(names)} for d, names in self.names.items()}
        self.sorted = {d: sorted(names) for d, names in self.names.items()}

    def code(self, dimension: Dimension, name: str, field: str) -> int:
        codes = self.codes[dimension]
        found = codes.get(name, codes.get(_key(name)))
        if found is None:
            raise ValidationError(self._unknown(dimension, name), field=field)
        return found

    def _unknown(self, dimension: Dimension, name: str) -> str:
        """What is allowed: every name when there are few, else the closest by prefix (a
        binary search, so a catalog of any size answers in the same time)."""
        kind = dimension.removesuffix("s").replace("categorie", "category")
        names = self.sorted[dimension]
        said = f"{kind} {name!r} is not one of this bundle's"
        if not names:
            return f"{kind} {name!r} is unknown: this bundle's catalog names no {dimension}"
        if len(names) <= LISTED_NAMES:
            return f"{said} {dimension}; allowed: {', '.join(names)}"
        key, closest = _key(name), []
        for length in range(min(len(key), 3), 0, -1):
            start = bisect.bisect_left(names, key[:length])
            closest = [
                n for n in names[start : start + CLOSEST_NAMES] if n[:length] == key[:length]
            ]
            if closest:
                break
        hint = f"closest: {', '.join(closest)}" if closest else f"e.g. {', '.join(names[:5])}"
        return f"{said} {len(names):,} {dimension}; {hint}"


@dataclass(frozen=True)
class _Resolved:
    """A policy with its names resolved to codes and its items to indices."""

    blocked: dict[Dimension, frozenset[int]]
    only: tuple[tuple[Dimension, frozenset[int]], ...]  # each constraint applies
    factors: dict[Dimension, dict[int, float]]  # code → multiplier (a bury's is 1 / factor)
    pins: dict[int, int]  # item index → position, 0-based

    def merged(self, request: _Resolved) -> _Resolved:
        """The bundle's policy (self) with a request's on top (see the module's docstring)."""
        taken = set(request.pins.values())
        pins = {i: at for i, at in self.pins.items() if i not in request.pins and at not in taken}
        return _Resolved(
            blocked={d: self.blocked[d] | request.blocked[d] for d in DIMENSIONS},
            only=self.only + request.only,
            factors={d: self.factors[d] | request.factors[d] for d in DIMENSIONS},
            pins=pins | request.pins,
        )


def _resolve(spec: Merchandising, vocabulary: Vocabulary, where: str) -> _Resolved:
    """Names to codes, ids to indices; the first unknown one is an error naming its field."""
    for below, message in policy_errors(spec):
        raise ValidationError(message, field=where + below)
    blocked: dict[Dimension, frozenset[int]] = {}
    only: list[tuple[Dimension, frozenset[int]]] = []
    factors: dict[Dimension, dict[int, float]] = {}
    for d in DIMENSIONS:
        blocked[d] = frozenset(
            vocabulary.code(d, n, f"{where}.filters.{d}[{i}]")
            for i, n in enumerate(getattr(spec.filters, d))
        )
        wanted = getattr(spec.only, d)
        if wanted:
            codes = (vocabulary.code(d, n, f"{where}.only.{d}[{i}]") for i, n in enumerate(wanted))
            only.append((d, frozenset(codes)))
        factors[d] = {}
        for section, sign in (("boost", 1.0), ("bury", -1.0)):
            for name, factor in getattr(getattr(spec, section), d).items():
                code = vocabulary.code(d, name, f'{where}.{section}.{d}["{name}"]')
                factors[d][code] = float(factor) ** sign
    pins: dict[int, int] = {}
    if spec.pins:
        ids = list(spec.pins)
        for item_id, index in zip(ids, vocabulary.items.positions(ids).tolist()):
            if index < 0:
                raise ValidationError(
                    f"item {item_id!r} is not in this bundle's catalog; a pin names an item id "
                    "the bundle holds",
                    field=f'{where}.pins["{item_id}"]',
                )
            pins[index] = spec.pins[item_id] - 1
    return _Resolved(blocked, tuple(only), factors, pins)


# ---------------------------------------------------------------- the compiled policy
@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value to compare
class Policy:
    """A policy compiled against one bundle's item table: lookup tables over the codes (an
    extra last entry stands for an unknown category or brand, code -1)."""

    items: ItemTable
    category_ok: np.ndarray | None  # bool [categories + 1]; None: every category shown
    brand_ok: np.ndarray | None  # bool [brands + 1]
    tags_blocked: np.ndarray | None  # bool [tags]: an item with any of these is never shown
    tags_wanted: tuple[np.ndarray, ...]  # bool [tags] each: an item needs one of each
    category_factor: np.ndarray | None  # float64 [categories + 1]; None: all 1
    brand_factor: np.ndarray | None
    tag_log_factor: np.ndarray | None  # float64 [tags]: an item's factors multiply
    pins: tuple[tuple[int, int], ...]  # (position 0-based, item index), by position
    only_categories: np.ndarray  # codes of an allow-list of categories, for topping up
    # The pins whose items are in stock and allowed, found once: (positions, indices, ids).
    _showable: tuple[np.ndarray, np.ndarray, list[str]] = field(init=False, repr=False)
    # Popular items as this policy orders them, per fallback content key (`popular`).
    _popular: dict[str, list[tuple[str, float]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        at = np.array([p for p, _ in self.pins], dtype=np.int64)
        items = np.array([i for _, i in self.pins], dtype=np.int64)
        show = self.items.in_stock[items] & self.allows(items)
        showable = (at[show], items[show], self.items.ids_of(items[show].tolist()))
        object.__setattr__(self, "_showable", showable)
        object.__setattr__(self, "_popular", {})

    @property
    def restricts(self) -> bool:
        return (
            self.category_ok is not None
            or self.brand_ok is not None
            or self.tags_blocked is not None
            or bool(self.tags_wanted)
        )

    @property
    def boosts(self) -> bool:
        return (
            self.category_factor is not None
            or self.brand_factor is not None
            or self.tag_log_factor is not None
        )

    def allows(self, items: np.ndarray) -> np.ndarray:
        """Whether each item (an index) may be shown; -1 (an item the bundle lacks) may not
        be when the policy restricts anything."""
        known = items >= 0
        keep: np.ndarray = known.copy() if self.restricts else np.ones(items.size, dtype=bool)
        if not self.restricts or not items.size:
            return keep
        safe = np.where(known, items, 0)
        if self.category_ok is not None:
            keep &= self.category_ok[self.items.category[safe]]
        if self.brand_ok is not None:
            keep &= self.brand_ok[self.items.brand[safe]]
        if self.tags_blocked is not None or self.tags_wanted:
            codes, owner = self._tags(safe)
            if self.tags_blocked is not None:
                keep &= np.bincount(owner[self.tags_blocked[codes]], minlength=items.size) == 0
            for wanted in self.tags_wanted:
                keep &= np.bincount(owner[wanted[codes]], minlength=items.size) > 0
        return keep

    def factors(self, items: np.ndarray) -> np.ndarray:
        """Each item's multiplier of its score: the product of its category's, brand's and
        tags' factors (1 when none applies)."""
        out = np.ones(items.size, dtype=np.float64)
        if self.category_factor is not None:
            out *= self.category_factor[self.items.category[items]]
        if self.brand_factor is not None:
            out *= self.brand_factor[self.items.brand[items]]
        if self.tag_log_factor is not None:
            codes, owner = self._tags(items)
            out *= np.exp(
                np.bincount(owner, weights=self.tag_log_factor[codes], minlength=items.size)
            )
        return out

    def _tags(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tag codes of `items` and the position in `items` each belongs to."""
        indptr = self.items.tag_indptr
        starts, lengths = indptr[items], indptr[items + 1] - indptr[items]
        total = int(lengths.sum())
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        return self.items.tag_codes[offsets], np.repeat(np.arange(items.size), lengths)

    def pinned(self, blocked: np.ndarray) -> list[tuple[int, str]]:
        """The pins that may be shown: (position 0-based, item id) of the pinned items in
        stock, allowed by the policy and not in `blocked` (item indices: bought, in the cart,
        excluded)."""
        at, items, ids = self._showable
        if not ids or not blocked.size:
            return list(zip(at.tolist(), ids))
        show = (~member(items, blocked)).tolist()
        return [(p, i) for p, i, ok in zip(at.tolist(), ids, show) if ok]

    def popular(
        self, model: Model, key: str, ranked: list[tuple[str, float]]
    ) -> list[tuple[str, float]]:
        """Popular items (id, score), the fallback content of context `key`, as this policy
        wants them: what it rules out dropped, an allow-list of categories followed by those
        categories' best sellers (so a category page fills), and boosts multiplying the
        scores, best first. Worked out once per key: the content is the bundle's."""
        found = self._popular.get(key)
        if found is None:
            found = self._popular[key] = self._merchandised(model, ranked)
        return found

    def _merchandised(
        self, model: Model, ranked: list[tuple[str, float]]
    ) -> list[tuple[str, float]]:
        table = self.items
        index = table.positions([item for item, _ in ranked])
        scores = np.array([score for _, score in ranked], dtype=np.float64)
        if self.only_categories.size:
            best = [model.category_top(int(c)) for c in self.only_categories.tolist()]
            extra = np.concatenate(best).astype(np.int64)
            extra = extra[table.in_stock[extra] & ~member(extra, index)]
            index = np.concatenate([index, extra])
            scores = np.concatenate([scores, model.popularity.overall[extra]])
        keep = (index >= 0) & self.allows(index)
        index, scores = index[keep], scores[keep]
        if self.boosts:
            scores = scores * self.factors(index)
            order = np.argsort(-scores, kind="stable")
            index, scores = index[order], scores[order]
        return list(zip(table.ids_of(index.tolist()), scores.tolist()))


def member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Whether each value is in `of`: one comparison of every pair while that is small, since
    `np.isin` costs some 40 µs even for a handful of values."""
    if values.size * of.size > 1 << 16:
        found: np.ndarray = np.isin(values, of)
        return found
    found = np.equal(values[:, None], of[None, :]).any(axis=1)
    return np.asarray(found)


def _table(size: int, codes: Iterable[int], fill: bool) -> np.ndarray:
    table = np.full(size, not fill, dtype=bool)
    table[list(codes)] = fill
    return table


def _compile(resolved: _Resolved, items: ItemTable) -> Policy:
    sizes: dict[Dimension, int] = {
        "categories": len(items.category_names),
        "brands": len(items.brand_names),
        "tags": len(items.tag_names),
    }
    ok: dict[Dimension, np.ndarray | None] = {}
    labelled: tuple[Dimension, ...] = ("categories", "brands")
    for d in labelled:
        table = None
        if resolved.blocked[d]:
            table = _table(sizes[d] + 1, resolved.blocked[d], False)
        for dimension, codes in resolved.only:
            if dimension == d:
                wanted = _table(sizes[d] + 1, codes, True)  # the unknown (-1) is not wanted
                table = wanted if table is None else table & wanted
        ok[d] = table
    tags_blocked = None
    if resolved.blocked["tags"]:
        tags_blocked = _table(sizes["tags"], resolved.blocked["tags"], True)
    tags_wanted = tuple(_table(sizes["tags"], c, True) for d, c in resolved.only if d == "tags")
    factor: dict[Dimension, np.ndarray | None] = {}
    for d in DIMENSIONS:
        chosen = resolved.factors[d]
        if not chosen:
            factor[d] = None
            continue
        extra = 0 if d == "tags" else 1
        table = np.ones(sizes[d] + extra, dtype=np.float64)
        table[list(chosen)] = list(chosen.values())
        factor[d] = np.log(table) if d == "tags" else table
    # The categories a category page may show: those every `only.categories` names.
    allowed = [c for d, c in resolved.only if d == "categories"]
    only_categories = sorted(frozenset.intersection(*allowed)) if allowed else []
    return Policy(
        items=items,
        category_ok=ok["categories"],
        brand_ok=ok["brands"],
        tags_blocked=tags_blocked,
        tags_wanted=tags_wanted,
        category_factor=factor["categories"],
        brand_factor=factor["brands"],
        tag_log_factor=factor["tags"],
        pins=tuple(sorted((at, item) for item, at in resolved.pins.items())),
        only_categories=np.asarray(only_categories, dtype=np.int64),
    )


class Merchandiser:
    """A bundle's merchandising: its vocabulary and its own policy, compiled once at load, and
    each request's policy on top of it."""

    def __init__(self, items: ItemTable, spec: Merchandising | None = None) -> None:
        """Raises ValidationError (its field under `merchandising`) when the bundle's own policy
        names what its catalog lacks."""
        self.vocabulary = Vocabulary(items)
        self.spec = spec or Merchandising()
        self._resolved = _resolve(self.spec, self.vocabulary, "merchandising")
        self.policy = _compile(self._resolved, items) if self.spec else None
        # Pages send the same few policies over and over (a category page's): each is compiled
        # once. Keyed by its JSON; a policy that fails is not kept.
        self._compiled = functools.lru_cache(maxsize=COMPILED_POLICIES)(self._compile_request)

    def for_request(self, spec: Merchandising | None) -> Policy | None:
        """The policy for a request: the bundle's, with the request's on top. A request that
        names an unknown category, brand, tag or item is a ValidationError naming its field."""
        if not spec:
            return self.policy
        policy: Policy = self._compiled(_encode(spec))
        return policy

    def _compile_request(self, key: bytes) -> Policy:
        request = _resolve(_decode(key), self.vocabulary, "$.merchandising")
        return _compile(self._resolved.merged(request), self.vocabulary.items)


def place_pins(ids: Sequence[str], pins: Sequence[tuple[int, str]], k: int) -> list[str]:
    """`ids` with each pinned item at its position (0-based, ascending in `pins`) and the others
    in their order around them: a pinned item already in the list moves. At most k ids; a pin
    at or past k is not shown, and one past the end of a shorter list ends it."""
    pinned = {item for at, item in pins if at < k}
    out = [i for i in ids if i not in pinned]
    for at, item in pins:  # ascending: a later insertion never moves an earlier pin
        if at < k:
            out.insert(min(at, len(out)), item)
    return out[:k]
