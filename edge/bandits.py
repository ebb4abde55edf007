"""Bandit-chosen content: Thompson sampling (Beta posteriors, drawn through their normal
approximation) over the arms of a slot (banners, offers, the order
of a strip), per segment. Export computes each arm's Beta prior from logged impressions and
clicks; each node adds what it sees through POST /v1/events: impressions and clicks that name
the slot and the arm as `variant` and quote the answer's `decision_id`, which must verify
(`edge.decisions`), so only choices the edge really made, each counted once, teach it. Every
choice comes with its selection probability, so the page can log it and a new policy can be
evaluated offline (inverse propensity scoring).

With `by_segment`, each of the bundle's segments keeps its own counts at the node, from the
segment's own prior when export wrote one, else everyone's; visitors without a segment (no
consent, no visitor graph) and any name the bundle does not know share the all-segments key,
so the keys a node keeps per slot are bounded by the bundle, not by what feedback says."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import msgspec
import numpy as np
from msgspec import Meta, Struct

from edge.schemas import Label, SlotChoice

if TYPE_CHECKING:
    from edge.visitor import VisitorModel

# Everyone's prior (also where a segment without one of its own starts), and at the node the
# counts of visitors with no segment this bundle knows.
ALL_SEGMENTS = ""
PROPENSITY_DRAWS = 500  # Monte Carlo draws behind each reported selection probability


class Arm(Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    content: dict[Label, Annotated[str, Meta(max_length=1024)]] = {}


class Bandit(Struct, frozen=True, forbid_unknown_fields=True):
    slot: Annotated[str, Meta(min_length=1, max_length=64)]
    arms: Annotated[list[Arm], Meta(min_length=2, max_length=50)]
    by_segment: bool = True
    # segment ("" for all) -> [alpha, beta] per arm, from logged feedback at export
    priors: dict[str, list[tuple[float, float]]] = {}


class BanditTable(Struct, frozen=True):
    """bandits.msgpack."""

    bandits: list[Bandit]


class BanditPolicy:
    """Thompson sampling for every slot of a bundle, with this node's own feedback added to
    the export's priors. Thread-safe: feedback arrives from worker threads."""

    def __init__(
        self, bandits: list[Bandit], seed: int | None = None, segments: Iterable[str] = ()
    ) -> None:
        """`segments`: the names the bundle's visitor graph can give (`segment_names`); each
        learns on its own, as does any segment a bandit's priors name."""
        self.bandits = {b.slot: b for b in bandits}
        self.arm_index = {b.slot: {a.name: i for i, a in enumerate(b.arms)} for b in bandits}
        self.segments = frozenset(segments)
        # (slot, segment) -> float64 [arms, 2]: impressions and clicks seen at this node
        self.seen: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)

    def key(self, slot: str, segment: str | None) -> str:
        """The segment whose counts a choice for `segment` reads and its feedback adds to: its
        own when the slot learns per segment and the bundle knows the name, else everyone's."""
        bandit = self.bandits[slot]
        if bandit.by_segment and segment and (segment in self.segments or segment in bandit.priors):
            return segment
        return ALL_SEGMENTS

    def posterior(self, slot: str, segment: str | None) -> np.ndarray:
        """[arms, 2] Beta parameters: the segment's prior (else everyone's, else flat) plus this
        node's clicks and non-clicks under the segment's key."""
        bandit = self.bandits[slot]
        key = self.key(slot, segment)
        flat = [(1.0, 1.0)] * len(bandit.arms)
        start = bandit.priors.get(key) or bandit.priors.get(ALL_SEGMENTS) or flat
        prior = np.array(start, np.float64)
        with self._lock:
            seen = self.seen.get((slot, key))
            if seen is not None:
                # A click whose impression never came still counts; non-clicks never go below 0.
                misses = np.maximum(seen[:, 0] - seen[:, 1], 0.0)
                prior = prior + np.column_stack([seen[:, 1], misses])
        return np.maximum(prior, 1e-3)

    def choose(self, slot: str, segment: str | None) -> SlotChoice:
        """One Thompson draw picks the arm; the share of further draws it wins is its selection
        probability (to log, for offline evaluation). Each arm's Beta posterior is drawn from
        the normal with its mean and variance: numpy's Beta sampler costs about 0.1-0.3 ms per
        call here, its normal sampler a few µs, and the chosen arm and its probability come
        from the same draws, so the logged probability is the policy's own."""
        bandit = self.bandits[slot]
        params = self.posterior(slot, segment)
        alpha, beta = params[:, :1], params[:, 1:]
        total = alpha + beta
        mean, sd = alpha / total, np.sqrt(alpha * beta / (total * total * (total + 1.0)))
        with self._lock:  # numpy generators are not thread-safe
            noise = self._rng.standard_normal((len(bandit.arms), PROPENSITY_DRAWS))
        draws = mean + sd * noise
        winners = draws.argmax(axis=0)
        chosen = int(winners[0])
        propensity = float((winners == chosen).mean())
        arm = bandit.arms[chosen]
        return SlotChoice(arm.name, dict(arm.content), round(propensity, 4))

    def record(self, slot: str, arm: str, segment: str | None, clicked: bool) -> bool:
        """An impression (clicked=False) or a click (clicked=True) of an arm, under the segment
        the arm was chosen for (the verified decision's, never one an event names); whether
        this bundle runs that arm (else nothing is counted)."""
        index = self.arm_index.get(slot, {}).get(arm)
        if index is None:
            return False  # a slot or arm this bundle does not run: not ours to learn from
        bandit = self.bandits[slot]
        key = self.key(slot, segment)
        with self._lock:
            seen = self.seen.setdefault((slot, key), np.zeros((len(bandit.arms), 2)))
            seen[index, 1 if clicked else 0] += 1.0
        return True


def segment_names(visitor: VisitorModel | None) -> frozenset[str]:
    """Every segment the bundle's visitor graph can name: its clusters and the shop's rules."""
    if visitor is None or visitor.segments is None:
        return frozenset()
    return frozenset(visitor.segments.codes)


bandit_table_decoder = msgspec.msgpack.Decoder(BanditTable)
