"""Triggered offers: declarative rules over what a visit shows, each with one action, and the
guardrails every answer passes through. Rules come from a TOML file at export (or the three
defaults below), are checked there with errors that name the rule, the field and what is
allowed, and travel in the bundle (`rules.msgpack`). Every answer lists the rules that fired and
the ones a guardrail held back, each with why, so a merchant can see what happened."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from edge.conditions import SYMBOLS, Conditions, bound_errors, holds
from edge.schemas import Fired, Intent, Offer, Profile, ResolvedContext, SessionEvent

# What a condition can look at (operators: `edge.conditions`).
NUMERIC_SIGNALS = (
    "cart_idle_minutes",  # since the cart was last touched (events need `ts`); unknown otherwise
    "dwell_seconds",  # the longest dwell on one item viewed in this session
    "visits_without_purchase",  # this visit included; profile, or the page's `context.visits`
    "cart_value",  # summed prices of the items in the cart
    "intent",  # purchase probability
    "local_hour",
)
LABEL_SIGNALS = ("segment", "intent_label", "device", "country")
SIGNALS = NUMERIC_SIGNALS + LABEL_SIGNALS
ACCESSORIES_OF = ("dwelled_item", "cart_item")  # the item whose accessories are shown


class Accessories(Struct, frozen=True, forbid_unknown_fields=True):
    of: str = "dwelled_item"
    k: Annotated[int, Meta(ge=1, le=20)] = 4


class Rule(Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    when: Conditions  # {signal: {operator: value}}; all must hold
    priority: int = 100  # lower goes first
    offer: Offer | None = None  # exactly one of offer, accessories and content
    accessories: Accessories | None = None
    content: dict[str, str] | None = None  # a banner or content block, handed to the page
    cap_per_session: Annotated[int, Meta(ge=1)] = 1  # times it may show in one session
    # The rule sets it belongs to; an experiment variant picks a set (`rules = "..."`), and
    # without one the "default" set applies.
    sets: list[Annotated[str, Meta(min_length=1, max_length=64)]] = msgspec.field(
        default_factory=lambda: ["default"]
    )


class Guardrails(Struct, frozen=True, forbid_unknown_fields=True):
    max_offers_per_session: Annotated[int, Meta(ge=0)] = 1
    max_discount_percent: Annotated[float, Meta(gt=0.0, le=100.0)] = 30.0
    quiet_after_purchase_hours: Annotated[float, Meta(ge=0.0)] = 24.0  # no offer right after


class RuleBook(Struct, frozen=True, forbid_unknown_fields=True):
    """A rules file (TOML) and `rules.msgpack`: [[rules]] and [guardrails]."""

    rules: list[Rule] = []
    guardrails: Guardrails = Guardrails()


DEFAULT_RULES = RuleBook(
    rules=[
        Rule(
            name="abandoned-cart",
            when={"cart_idle_minutes": {"ge": 15}, "cart_value": {"gt": 0}},
            priority=10,
            offer=Offer(discount_percent=10, code="CART10", with_cart_items=True),
        ),
        Rule(
            name="loyalty",
            when={"visits_without_purchase": {"ge": 3}},
            priority=20,
            offer=Offer(discount_percent=5, code="WELCOMEBACK5"),
        ),
        Rule(
            name="long-dwell",
            when={"dwell_seconds": {"gt": 30}},
            priority=30,
            accessories=Accessories(of="dwelled_item", k=4),
        ),
    ]
)


def rule_book_errors(book: RuleBook) -> list[str]:
    """What the schema cannot say, naming the rule, the field and what is allowed."""
    errors, names = [], set()
    for rule in book.rules:
        where = f"rule {rule.name!r}"
        if rule.name in names:
            errors.append(f"{where} is defined twice; rule names must be unique")
        names.add(rule.name)
        actions = [a for a in ("offer", "accessories", "content") if getattr(rule, a) is not None]
        if len(actions) != 1:
            errors.append(
                f"{where} has {len(actions)} actions ({', '.join(actions) or 'none'}); it needs "
                "exactly one of: offer, accessories, content"
            )
        if rule.offer and rule.offer.discount_percent > book.guardrails.max_discount_percent:
            errors.append(
                f"{where}, offer.discount_percent: {rule.offer.discount_percent:g} is over "
                f"guardrails.max_discount_percent ({book.guardrails.max_discount_percent:g})"
            )
        if rule.accessories and rule.accessories.of not in ACCESSORIES_OF:
            errors.append(
                f"{where}, accessories.of: {rule.accessories.of!r}; allowed: "
                f"{', '.join(ACCESSORIES_OF)}"
            )
        if not rule.when:
            errors.append(f"{where} has no conditions (when = {{...}})")
        for signal, bounds in rule.when.items():
            errors += _condition_errors(where, signal, bounds)
    return errors


def _condition_errors(where: str, signal: str, bounds: dict[str, object]) -> list[str]:
    if signal not in SIGNALS:
        return [f"{where}, when.{signal}: unknown signal; allowed: {', '.join(SIGNALS)}"]
    numeric = signal in NUMERIC_SIGNALS
    return [
        error
        for op, value in bounds.items()
        for error in bound_errors(f"{where}, when.{signal}", op, value, numeric)
    ]


@dataclass(frozen=True)
class VisitSignals:
    """The values the rules look at; None where this visit does not tell (a condition on an
    unknown value does not hold)."""

    values: dict[str, float | str | None]
    dwelled_item: str | None  # the item of `dwell_seconds`
    cart: list[str]
    just_bought: bool  # a purchase in this session, or within the quiet period
    shown: list[str]  # rules whose actions this session already showed (the page says)


@dataclass(frozen=True)
class RuleOutcome:
    fired: list[Fired]
    held_back: list[Fired]


NO_RULES = RuleOutcome([], [])


def visit_signals(
    events: Sequence[SessionEvent],
    cart: Sequence[str],
    profile: Profile | None,
    context: ResolvedContext,
    visits: int | None,
    segment: str | None,
    intent: Intent | None,
    rules_shown: Sequence[str],
    prices_of: Callable[[list[str]], Iterable[float]],
    now: float,
    quiet_after_purchase_hours: float,
) -> VisitSignals:
    """What this request says about the visit, for the rules."""
    cart = list(cart) or cart_from(events)
    touched = [t for e in events if e.type in CART_EVENTS and (t := epoch_of(e.ts)) is not None]
    idle = (now - max(touched)) / 60.0 if cart and touched else None
    dwelled = max(
        ((e.dwell_ms, e.item_id) for e in events if e.type == "view" and e.dwell_ms),
        default=None,
    )
    bought_now = any(e.type == "purchase" for e in events)
    from_profile = None
    just_bought = bought_now
    if profile is not None:
        from_profile = 1 if bought_now else profile.visits_since_purchase + 1
        quiet_s = quiet_after_purchase_hours * 3600.0
        just_bought = just_bought or (
            profile.last_purchase_ts > 0 and now - profile.last_purchase_ts < quiet_s
        )
    if bought_now:
        visits = None  # this visit bought: it is not one without a purchase
    counted = [v for v in (from_profile, visits) if v is not None]
    values: dict[str, float | str | None] = {
        "cart_idle_minutes": max(idle, 0.0) if idle is not None else None,
        "dwell_seconds": dwelled[0] / 1000.0 if dwelled else None,
        "visits_without_purchase": float(max(counted)) if counted else None,
        "cart_value": float(sum(prices_of(list(dict.fromkeys(cart))))) if cart else 0.0,
        "intent": intent.probability if intent is not None else None,
        "local_hour": float(context.local_hour),
        "segment": segment,
        "intent_label": intent.label if intent is not None else None,
        "device": context.device or None,
        "country": context.country or None,
    }
    dwelled_item = dwelled[1] if dwelled else None
    return VisitSignals(values, dwelled_item, cart, just_bought, list(rules_shown))


CART_EVENTS = ("add_to_cart", "remove_from_cart")


def cart_from(events: Sequence[SessionEvent]) -> list[str]:
    """The cart as this session's events leave it, when the page does not send it (the rules'
    abandoned cart, and what an answer must not recommend)."""
    cart: dict[str, None] = {}
    for event in events:
        if event.type == "add_to_cart":
            cart[event.item_id] = None
        elif event.type == "remove_from_cart":
            cart.pop(event.item_id, None)
        elif event.type == "purchase":
            cart.clear()
    return list(cart)


def epoch_of(ts: str | float | None) -> float | None:
    """Epoch seconds of an event's `ts` (epoch seconds or milliseconds, or ISO 8601 with an
    offset); None when absent or unreadable."""
    if ts is None:
        return None
    if isinstance(ts, int | float):
        value = float(ts)
        return value / 1000.0 if value > 1e11 else value  # milliseconds: past the year 5138
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


DEFAULT_SET, NO_RULES_SET = "default", "none"  # "none": a variant that holds every rule out


def rule_sets(book: RuleBook) -> set[str]:
    return {name for rule in book.rules for name in rule.sets} | {DEFAULT_SET, NO_RULES_SET}


class RulePlan:
    """A rule book prepared once, when the bundle loads: each rule set's rules in priority
    order, and which rule names are offers (the guardrails count those)."""

    def __init__(self, book: RuleBook) -> None:
        self.guardrails = book.guardrails
        by_priority = sorted(book.rules, key=lambda r: r.priority)
        self.by_set = {name: [r for r in by_priority if name in r.sets] for name in rule_sets(book)}
        self.offers = frozenset(r.name for r in book.rules if r.offer is not None)

    def evaluate(
        self,
        signals: VisitSignals,
        accessories: Callable[[str, int], list[str]],
        rule_set: str = DEFAULT_SET,
    ) -> RuleOutcome:
        """The rules of `rule_set` in priority order. `accessories(item, k)` finds what goes
        with an item."""
        fired, held_back = [], []
        offers_shown = sum(1 for name in signals.shown if name in self.offers)
        for rule in self.by_set.get(rule_set, []):
            why = _matches(rule, signals.values)
            if why is None:
                continue
            held = _held_back(rule, signals, offers_shown, self.guardrails)
            if held:
                held_back.append(Fired(rule.name, f"{why}; held back: {held}"))
                continue
            if rule.offer is not None:
                offers_shown += 1
                items = signals.cart if rule.offer.with_cart_items else []
                fired.append(Fired(rule.name, why, offer=rule.offer, items=items))
            elif rule.accessories is not None:
                of = rule.accessories.of
                anchor = signals.dwelled_item if of == "dwelled_item" else _last(signals.cart)
                if anchor is None:
                    held_back.append(
                        Fired(rule.name, f"{why}; held back: no {of.replace('_', ' ')}")
                    )
                    continue
                found = accessories(anchor, rule.accessories.k)
                fired.append(Fired(rule.name, f"{why}; accessories of {anchor}", items=found))
            else:
                fired.append(Fired(rule.name, why, content=rule.content))
        return RuleOutcome(fired, held_back)


def _matches(rule: Rule, values: dict[str, float | str | None]) -> str | None:
    """Why the rule matches ("cart_idle_minutes 17.2 >= 15, ..."), or None when it does not."""
    reasons = []
    for signal, bounds in rule.when.items():
        value = values.get(signal)
        if value is None:
            return None
        for op, bound in bounds.items():
            if not holds(op, value, bound):
                return None
            shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
            reasons.append(f"{signal} {shown} {SYMBOLS[op]} {bound!r}")
    return ", ".join(reasons)


def _held_back(rule: Rule, signals: VisitSignals, offers_shown: int, guard: Guardrails) -> str:
    """The guardrail that stops a matching rule, or ""."""
    if signals.shown.count(rule.name) >= rule.cap_per_session:
        return f"shown {rule.cap_per_session} time(s) this session already (cap_per_session)"
    if rule.offer is None:
        return ""
    if signals.just_bought:
        return (
            "the visitor just bought (this session, or within "
            f"{guard.quiet_after_purchase_hours:g} h: quiet_after_purchase_hours)"
        )
    if offers_shown >= guard.max_offers_per_session:
        return f"{offers_shown} offer(s) this session already (max_offers_per_session)"
    return ""


def _last(items: Sequence[str]) -> str | None:
    return items[-1] if items else None


rule_book_decoder = msgspec.msgpack.Decoder(RuleBook)
