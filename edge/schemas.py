"""Typed schemas of the HTTP API (requests, answers, feedback) and of the profiles a bundle
carries. Both halves use them: the edge decodes with them, and `export` imports them to write
what the edge will read. The manifest's types live with the bundle (`edge.bundle.manifest`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from edge.merchandising import Merchandising

# Event types every shop has; a build config may add more (with a weight of their own).
DEFAULT_EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase")

Id = Annotated[str, Meta(min_length=1, max_length=128)]
Label = Annotated[str, Meta(max_length=64)]


# ---------------------------------------------------------------- POST /v1/recommend
class SessionEvent(Struct, frozen=True, forbid_unknown_fields=True):
    type: Label
    item_id: Id
    ts: str | float | None = None
    dwell_ms: Annotated[int, Meta(ge=0, le=86_400_000)] | None = None


class Session(Struct, frozen=True, forbid_unknown_fields=True):
    events: Annotated[list[SessionEvent], Meta(max_length=200)] = []
    # Rules whose action the page already showed in this session, once per showing (the page
    # keeps this; the edge keeps no state between requests). Guardrails count it.
    rules_shown: Annotated[list[Label], Meta(max_length=100)] = []


class Context(Struct, frozen=True, forbid_unknown_fields=True):
    device: Label | None = None
    country: Label | None = None
    local_hour: Annotated[int, Meta(ge=0, le=23)] | None = None
    page: Annotated[str, Meta(max_length=256)] | None = None
    cart: Annotated[list[Id], Meta(max_length=200)] = []
    # Visits by this visitor so far, this one included, as the page counts them (a first-party
    # cookie); for a known customer the profile's count is used when it is higher.
    visits: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    # The page's clock (as session events' `ts`): what the session's own timestamps are measured
    # against (a cart's idle time), so a visitor's clock running fast or slow does not time the
    # rules wrongly. Ignored when more than a day from the edge's clock.
    now: str | float | None = None


class RecommendRequest(Struct, frozen=True, forbid_unknown_fields=True):
    user_id: Id | None = None
    session_id: Id | None = None  # the unit of session experiments, and of anonymous visitors
    session: Session | None = None
    context: Context | None = None
    k: Annotated[int, Meta(ge=1, le=100)] = 10
    exclude: Annotated[list[Id], Meta(max_length=1000)] = []
    # At most this many items of one category in the answer; 0 lifts the cap. None: the
    # bundle's setting (serving.max_per_category at export).
    max_per_category: Annotated[int, Meta(ge=0, le=100)] | None = None
    consent: bool = True
    slots: Annotated[list[Label], Meta(max_length=20)] = []  # bandit slots to fill (banners...)
    # Pins, boosts, buries and filters on top of the bundle's own (edge.merchandising).
    merchandising: Merchandising | None = None
    # Display fields for every item of the answer (its items and the rules' items): `details`.
    fields: Annotated[list[ItemField], Meta(max_length=4)] = []


class ScoredItem(Struct, frozen=True):
    item_id: str
    score: float


# What a page may ask to have with each item, to render it without a catalog of its own.
ItemField = Literal["title", "price", "category", "brand"]


class ItemDetails(Struct, frozen=True, omit_defaults=True):
    """An item's display fields, those asked for and known (an unknown one is left out)."""

    title: str | None = None
    price: float | None = None
    category: str | None = None
    brand: str | None = None


class ResolvedContext(Struct, frozen=True):
    device: str
    country: str
    local_hour: int
    hour_bucket: str
    page: str | None = None


class Intent(Struct, frozen=True):
    probability: float  # that this session ends in a purchase
    label: str  # "high intent", "browsing" or "lurker", by the bundle's thresholds


# ---------------------------------------------------------------- triggered offers (edge/rules.py)
class Offer(Struct, frozen=True, forbid_unknown_fields=True):
    discount_percent: Annotated[float, Meta(gt=0.0, le=100.0)]
    code: Annotated[str, Meta(min_length=1, max_length=64)]
    with_cart_items: bool = False  # list the cart's items with the offer (a cart reminder)


class Fired(Struct, frozen=True):
    """A rule that acted (or, in `held_back`, one that matched but a guardrail stopped)."""

    rule: str
    why: str
    offer: Offer | None = None
    items: list[str] = []  # the cart's items for an offer, or the accessories
    content: dict[str, str] | None = None


class SlotChoice(Struct, frozen=True):
    """A bandit's choice for a slot; log `propensity` with the slot's impression."""

    arm: str
    content: dict[str, str]
    propensity: float  # the probability this arm was chosen, for off-policy evaluation


class RecommendResponse(Struct, frozen=True):
    items: list[ScoredItem]
    bundle: str | None
    fallback: str | None
    personalized: bool
    context: ResolvedContext
    took_ms: float
    segment: str | None = None  # the visitor's micro-segment, when the bundle has segments
    intent: Intent | None = None  # purchase intent, when the bundle has an intent model
    variants: dict[str, str] = {}  # experiment key -> the variant this answer used
    content: dict[str, str] = {}  # what the variants hand to the page (banner ids, copy...)
    rules_fired: list[Fired] = []  # offers, accessories and content blocks, each with why
    rules_held_back: list[Fired] = []  # rules that matched but a guardrail stopped, with why
    slots: dict[str, SlotChoice] = {}  # slot -> the bandit's choice, for the slots asked for
    # Signed: feedback that quotes it may teach the bandits (edge.decisions). Null only in the
    # gateway's fallback answers, which make no decision.
    decision_id: str | None = None
    # item id -> its display fields, for every item of the answer, when the request asked.
    details: dict[str, ItemDetails] = {}


# ---------------------------------------------------------------- POST /v1/events
# What a page reports back: impressions and clicks of what it showed, and the shop events that
# follow. Experiment, variant, slot and propensity say which decision an event answers.
FEEDBACK_TYPES = ("impression", "click", *DEFAULT_EVENT_TYPES)


class FeedbackEvent(Struct, frozen=True, forbid_unknown_fields=True):
    type: Label
    item_id: Id
    user_id: Id | None = None  # at least one of user_id and session_id
    session_id: Id | None = None
    ts: Annotated[datetime, Meta(tz=True)] | None = None  # RFC 3339 with offset; default: now
    event_id: Id | None = None  # the client's id, so a retried batch can be de-duplicated
    slot: Label | None = None  # where on the page (a strip, a banner)
    experiment: Label | None = None
    variant: Label | None = None
    propensity: Annotated[float, Meta(gt=0.0, le=1.0)] | None = None  # P(what was shown)
    price: Annotated[float, Meta(ge=0.0)] | None = None
    qty: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    dwell_ms: Annotated[int, Meta(ge=0, le=86_400_000)] | None = None
    device: Label | None = None  # default: from the request's headers, as for /v1/recommend
    country: Label | None = None
    local_hour: Annotated[int, Meta(ge=0, le=23)] | None = None
    # The answer's decision_id: only impressions and clicks that quote a valid one teach the
    # bandits (edge.decisions.MAX_TOKEN_CHARS bounds it).
    decision_id: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None


class FeedbackBatch(Struct, frozen=True, forbid_unknown_fields=True):
    events: Annotated[list[FeedbackEvent], Meta(min_length=1, max_length=1000)]


class FeedbackAccepted(Struct, frozen=True):
    accepted: int  # events stored durably before this answer was sent


# ---------------------------------------------------------------- profiles.msgpack
class Profile(Struct, frozen=True, array_like=True):
    """What the profile store holds per known user: enough to fold the user in at request time."""

    recent_items: list[str]  # most recent first
    recent_weights: list[float]  # event-type weight of each recent item
    bought_items: list[str]
    n_events: int
    n_purchases: int
    last_ts: float  # epoch seconds
    monetary: float
    mean_price: float
    attributes: dict[str, str] = {}  # from the shop's users file (loyalty tier, age band, ...)
    segment: str = ""  # the micro-segment export assigned ("" when segments were not learned)
    visits_since_purchase: int = 0  # visits (sessions) after the last purchase, or all of them
    last_purchase_ts: float = 0.0  # epoch seconds of the last purchase; 0: never bought
