"""One recommendation request from validated input to answer, with fallback content whenever
the bundle is missing, a step fails or the latency budget runs out: the page always gets items."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from edge.bandits import BanditPolicy, segment_names
from edge.bundle import Bundle
from edge.bundle.manifest import Serving
from edge.context import context_keys, resolve_context
from edge.errors import BudgetExceeded, ValidationError
from edge.experiments import NO_TREATMENT, Treatment, treatment
from edge.merchandising import Merchandiser, Policy, place_pins
from edge.model import ItemTable
from edge.rules import NO_RULES, RuleOutcome, RulePlan, cart_from, epoch_of, visit_signals
from edge.schemas import (
    FEEDBACK_TYPES,
    Context,
    Intent,
    ItemDetails,
    ItemField,
    Profile,
    RecommendRequest,
    RecommendResponse,
    ResolvedContext,
    ScoredItem,
    Session,
    SessionEvent,
    SlotChoice,
)
from edge.scoring import (
    Candidates,
    Deadline,
    UserState,
    accessories,
    build_user_state,
    candidate_features,
    rank,
)
from edge.visitor import describe_visitor, visitor_features

log = logging.getLogger("edgeperso.recommend")

WARM_UP_SCAN_WAIT_S = 2.0  # the int8 scan's build takes some 15 ms at 100,000 items
ANSWER_WEIGHT = 0.05  # of the newest answer in `Recommender.answer_ms`


class Recommender:
    """Answers requests from a bundle. Without one (refused or missing) it still answers, from
    `fallback_content` when that much could be verified, else with no items."""

    def __init__(
        self,
        bundle: Bundle | None,
        budget_ms: float = 50.0,
        unavailable_reason: str | None = None,
        fallback_content: dict[str, list[tuple[str, float]]] | None = None,
    ) -> None:
        self.bundle = bundle
        self.budget_ms = budget_ms
        # What an answer that is not a fallback has been taking here, weighted to the recent
        # ones. A request with less budget left than that gets fallback content at once instead
        # of starting work it would give up half way: under overload, that waste crowded out
        # the answers that could finish in time.
        self.answer_ms = 0.0
        self.unavailable_reason = unavailable_reason or "no bundle loaded"
        self.fallback_content = bundle.fallback if bundle is not None else fallback_content or {}
        serving = bundle.manifest.models.serving if bundle is not None else Serving()
        self.max_per_category = serving.max_per_category
        self.sizes = serving.candidates
        self.scorer = serving.scorer or "ranker"
        # Thompson sampling per slot; what this node learns lives as long as the bundle does.
        self.bandits = (
            BanditPolicy(list(bundle.bandits), segments=segment_names(bundle.visitor))
            if bundle and bundle.bandits
            else None
        )
        self.rules = RulePlan(bundle.rules) if bundle and bundle.rules else None
        # What POST /v1/events may log: the feedback types and any this bundle weighs.
        weighed = bundle.model.event_weights if bundle is not None else {}
        self.feedback_types = frozenset(FEEDBACK_TYPES) | frozenset(weighed)
        # The catalog's names and the bundle's own pins, boosts and filters, compiled at load.
        self.merchandiser = None
        if bundle is not None:
            spec = bundle.manifest.models.merchandising
            self.merchandiser = bundle.merchandiser or Merchandiser(bundle.model.items, spec)

    def warm_up(self) -> None:
        """Run a cold and a personalized request once at load, so the first real visitor does not
        pay for onnxruntime's and numpy's first-call set-up (about 15 ms)."""
        if self.bundle is None:
            return
        # The int8 scan is still being built (edge.bundle): without it, a long warm-up search
        # would dequantize every row, the 4× larger float32 copy the scan exists to spare.
        self.bundle.model.embeddings.wait_for_scan(timeout=WARM_UP_SCAN_WAIT_S)
        seen = [item for item, _ in self.bundle.fallback.get("all", [])[:2]]
        weights = self.bundle.model.event_weights
        kind = "view" if "view" in weights else next(iter(weights))
        session = Session(events=[SessionEvent(type=kind, item_id=i) for i in seen])
        for request in (RecommendRequest(), RecommendRequest(session=session)):
            self.recommend(request)
        self.answer_ms = 0.0  # those paid for first calls: real answers set it

    def _check_slots(self, request: RecommendRequest) -> None:
        if self.bundle is None:  # no bundle: a fallback answer, without slots, not an error
            return
        running = self.bandits.bandits if self.bandits is not None else {}
        for i, slot in enumerate(request.slots):
            if slot not in running:
                raise ValidationError(
                    f"slot {slot!r} is not one this bundle's bandits fill; allowed: "
                    f"{sorted(running)}",
                    field=f"$.slots[{i}]",
                )

    def _check_event_types(self, request: RecommendRequest) -> None:
        if request.session is None or self.bundle is None:
            return
        known = self.bundle.model.event_weights
        for i, event in enumerate(request.session.events):
            if event.type not in known:
                raise ValidationError(
                    f"event type {event.type!r} is not one this bundle knows; allowed: "
                    f"{sorted(known)}",
                    field=f"$.session.events[{i}].type",
                )

    def recommend(
        self,
        request: RecommendRequest,
        headers: Mapping[str, str] | None = None,
        queued_ms: float = 0.0,
    ) -> RecommendResponse:
        """The answer to one request. `queued_ms`: how long it already waited in the server,
        spent from its latency budget (`edge.arrival`)."""
        started = time.perf_counter()
        context = resolve_context(request.context, headers or {})
        self._check_event_types(request)
        self._check_slots(request)
        policy = self._policy(request)
        bundle = self.bundle
        if bundle is None:
            # Without a catalog, a request's filters cannot be honoured: no items rather than
            # one they rule out.
            restricts = request.merchandising is not None and request.merchandising.restricts
            items = [] if restricts else self._popular(None, context, request, set(), request.k)
            reason = f"bundle_unavailable: {self.unavailable_reason}"
            return self._answer(items, None, reason, False, context, started)
        deadline = Deadline(self.budget_ms - queued_ms)
        step = "profile"
        try:
            if queued_ms >= self.budget_ms:  # answered at once, so the queue drains
                raise BudgetExceeded(
                    f"the request waited {queued_ms:.1f} ms in the server's queue, past its "
                    f"{self.budget_ms:g} ms budget"
                )
            if queued_ms + self.answer_ms > self.budget_ms:
                raise BudgetExceeded(
                    f"the request waited {queued_ms:.1f} ms in the server's queue; with the "
                    f"{self.answer_ms:.1f} ms an answer takes here, it would end past its "
                    f"{self.budget_ms:g} ms budget"
                )
            if request.consent:
                profile = bundle.profiles.get(request.user_id) if request.user_id else None
                events = request.session.events if request.session else []
                cart = request.context.cart if request.context else []
            else:  # not consented: only the context, nothing about the visitor
                profile, events, cart = None, [], []
            # A cart the page does not send is the one the session's events leave: never
            # recommended, like a sent one (not weighed twice: its events already count).
            exclude = list(request.exclude) + ([] if cart else cart_from(events))
            state = build_user_state(bundle.model, profile, events, cart, exclude)
            step = "segment and intent"
            segment, intent = None, None
            if request.consent and bundle.visitor is not None:
                segment, intent = describe_visitor(
                    bundle.visitor, bundle.model.items, profile, events, context, time.time()
                )
            step = "experiments"
            chosen = NO_TREATMENT
            if request.consent and bundle.experiments:
                chosen = treatment(bundle.experiments, request.user_id, request.session_id)
            step = "rules"
            outcome = NO_RULES
            if request.consent and self.rules is not None:
                outcome = self._rules(
                    bundle, request, profile, state, context, segment, intent, chosen.rules, policy
                )
            step = "slots"
            slots = {}
            if self.bandits is not None:
                slots = {slot: self.bandits.choose(slot, segment) for slot in request.slots}
            step = "candidates"
            deadline.check(step)
            if chosen.ranker == "popularity":  # a variant that holds personalization out
                items = self._popular(bundle, context, request, set(), request.k, policy)
                personalized = False
            else:
                candidates = candidate_features(
                    bundle.model,
                    state,
                    context,
                    self.sizes,
                    deadline,
                    *visitor_features(bundle.visitor, segment, intent),
                )
                step = "ranker"
                items = self._ranked(bundle, request, candidates, context, deadline, policy)
                personalized = state.has_history
            items = self._pinned(bundle, policy, items, request.k, state.blocked)
            return self._answer(
                items,
                bundle.build_id,
                None,
                personalized,
                context,
                started,
                segment,
                intent,
                chosen,
                outcome,
                slots,
                request.fields,
            )
        except BudgetExceeded as exc:
            reason = f"latency_budget: {exc.message}"
        except Exception:  # any failing step: log it, answer with fallback, never a 500
            log.exception("recommend step %r failed; answering with fallback content", step)
            reason = f"error: step '{step}' failed"
        items = self._popular(bundle, context, request, set(), request.k, policy)
        if policy is not None and policy.pins:
            blocked = bundle.model.items.lookup(sorted(self._blocked(bundle, request)))
            items = self._pinned(bundle, policy, items, request.k, blocked)
        return self._answer(
            items, bundle.build_id, reason, False, context, started, fields=request.fields
        )

    def _policy(self, request: RecommendRequest) -> Policy | None:
        """The merchandising policy of this request: the bundle's, with the request's on top
        (a ValidationError naming the field when it names what the catalog lacks)."""
        if self.merchandiser is None:
            return None
        return self.merchandiser.for_request(request.merchandising)

    def _pinned(
        self,
        bundle: Bundle,
        policy: Policy | None,
        items: list[ScoredItem],
        k: int,
        blocked: np.ndarray,
    ) -> list[ScoredItem]:
        """The answer with the policy's pins at their positions: a pinned item keeps its score
        when it was in the answer, else scores 0."""
        pins = policy.pinned(blocked) if policy is not None else []
        if not pins:
            return items
        scores = {it.item_id: it.score for it in items}
        ids = place_pins([it.item_id for it in items], pins, k)
        return [ScoredItem(i, scores.get(i, 0.0)) for i in ids]

    def _rules(
        self,
        bundle: Bundle,
        request: RecommendRequest,
        profile: Profile | None,
        state: UserState,
        context: ResolvedContext,
        segment: str | None,
        intent: Intent | None,
        rule_set: str,
        policy: Policy | None = None,
    ) -> RuleOutcome:
        plan = self.rules
        if plan is None:
            return NO_RULES
        signals = visit_signals(
            request.session.events if request.session else [],
            request.context.cart if request.context else [],
            profile,
            context,
            request.context.visits if request.context else None,
            segment,
            intent,
            request.session.rules_shown if request.session else [],
            bundle.model.items.prices,
            page_clock(request.context, time.time()),
            plan.guardrails.quiet_after_purchase_hours,
        )
        model = bundle.model

        def goes_with(item: str, k: int) -> list[str]:
            if policy is None or not policy.restricts:
                return accessories(model, item, k, state.blocked)
            found = accessories(model, item, len(model.items), state.blocked)  # all, then filter
            keep = policy.allows(model.items.positions(found)).tolist()
            return [i for i, ok in zip(found, keep) if ok][:k]

        return plan.evaluate(signals, goes_with, rule_set)

    def _ranked(
        self,
        bundle: Bundle,
        request: RecommendRequest,
        candidates: Candidates,
        context: ResolvedContext,
        deadline: Deadline,
        policy: Policy | None = None,
    ) -> list[ScoredItem]:
        """The candidates scored by the composite ranker, topped up when short. A policy's
        filters take candidates out before the ranker; its boosts multiply the scores before
        the top k."""
        cap = request.max_per_category
        if cap is None:
            cap = self.max_per_category
        boost = None
        if policy is not None:
            if policy.restricts:
                keep = policy.allows(candidates.items)
                candidates = Candidates(candidates.items[keep], candidates.features[keep])
            if policy.boosts:
                boost = policy.factors(candidates.items)
        top, scores = rank(bundle.model, candidates, request.k, deadline, cap, self.scorer, boost)
        ids = bundle.model.items.ids_of(top)
        items = [ScoredItem(i, round(float(s), 6)) for i, s in zip(ids, scores)]
        if len(items) < request.k:  # a tiny catalog or a long exclude list: top up
            items += self._top_up(bundle, context, request, items, cap, policy)
        return items

    def _top_up(
        self,
        bundle: Bundle,
        context: ResolvedContext,
        request: RecommendRequest,
        items: list[ScoredItem],
        cap: int,
        policy: Policy | None = None,
    ) -> list[ScoredItem]:
        """Popular items after the ranked ones, under the same category cap. Scored 0:
        popularity is on another scale than the ranker's probabilities."""
        taken = {it.item_id for it in items}
        limit = None if cap else request.k
        pool = self._popular(bundle, context, request, taken, limit, policy)
        table = bundle.model.items
        counts = Counter(table.categories([it.item_id for it in items]).tolist())
        out = []
        for it, code in zip(pool, table.categories([it.item_id for it in pool]).tolist()):
            if cap and code >= 0 and counts[code] >= cap:
                continue
            counts[code] += 1
            out.append(ScoredItem(it.item_id, 0.0))
            if len(items) + len(out) == request.k:
                break
        return out

    def _popular(
        self,
        bundle: Bundle | None,
        context: ResolvedContext,
        request: RecommendRequest,
        taken: set[str],
        limit: int | None,
        policy: Policy | None = None,
    ) -> list[ScoredItem]:
        """Precomputed popular items for the most specific context there is content for:
        enough to fill k next to `taken`, or all of them with `limit=None`; with a policy,
        only what it allows, in the order its boosts give."""
        blocked = self._blocked(bundle, request) | taken
        keys = context_keys(context)
        for key in (keys["country"], keys["device"], keys["hour"], "all"):
            if key in self.fallback_content:
                ranked = self.fallback_content[key]
                break
        else:
            key, ranked = "", []
        if bundle is not None and policy is not None:
            ranked = policy.popular(bundle.model, key, ranked)
        wanted = len(ranked) if limit is None else limit - len(taken)
        out: list[ScoredItem] = []
        for item_id, score in ranked:
            if len(out) >= wanted:
                break
            if item_id not in blocked:
                out.append(ScoredItem(item_id, float(score)))
        return out

    def _blocked(self, bundle: Bundle | None, request: RecommendRequest) -> set[str]:
        """What a fallback answer must not show: `exclude`, and with consent the cart and what
        a known customer bought."""
        blocked = set(request.exclude)
        if request.consent:
            cart = request.context.cart if request.context else []
            blocked |= set(cart or cart_from(request.session.events if request.session else []))
        if bundle is not None and request.user_id and request.consent:
            try:  # the fallback must not fail when the profile store does
                profile = bundle.profiles.get(request.user_id)
            except Exception:
                log.exception("profile store failed while answering with fallback content")
                profile = None
            if profile is not None:
                blocked |= set(profile.bought_items)
        return blocked

    def _answer(
        self,
        items: list[ScoredItem],
        build_id: str | None,
        fallback: str | None,
        personalized: bool,
        context: ResolvedContext,
        started: float,
        segment: str | None = None,
        intent: Intent | None = None,
        chosen: Treatment = NO_TREATMENT,
        outcome: RuleOutcome = NO_RULES,
        slots: dict[str, SlotChoice] | None = None,
        fields: Sequence[ItemField] = (),
    ) -> RecommendResponse:
        details = {}
        if fields and self.bundle is not None:
            shown = [it.item_id for it in items] + [i for f in outcome.fired for i in f.items]
            details = item_details(self.bundle.model.items, shown, fields)
        took_ms = round((time.perf_counter() - started) * 1000.0, 3)
        if fallback is None:
            # An exponentially weighted mean over about the last 20 answers.
            self.answer_ms += (took_ms - self.answer_ms) * (ANSWER_WEIGHT if self.answer_ms else 1)
        return RecommendResponse(
            items,
            build_id,
            fallback,
            personalized,
            context,
            took_ms,
            segment,
            intent,
            chosen.variants,
            chosen.content,
            outcome.fired,
            outcome.held_back,
            slots or {},
            details=details,
        )


def item_details(
    items: ItemTable, item_ids: Sequence[str], fields: Sequence[ItemField]
) -> dict[str, ItemDetails]:
    """The asked-for display fields of each id the bundle knows; a field it does not know for
    an item (no title, no price) is left out."""
    wanted = set(fields)
    out: dict[str, ItemDetails] = {}
    ids = list(dict.fromkeys(item_ids))
    for item_id, i in zip(ids, items.positions(ids).tolist()):
        if i < 0:
            continue
        price, category, brand = float(items.price[i]), int(items.category[i]), int(items.brand[i])
        out[item_id] = ItemDetails(
            title=items.title(i) if "title" in wanted else None,
            price=round(price, 2) if "price" in wanted and math.isfinite(price) else None,
            category=items.category_names[category]
            if "category" in wanted and category >= 0
            else None,
            brand=items.brand_names[brand] if "brand" in wanted and brand >= 0 else None,
        )
    return out


PAGE_CLOCK_TRUSTED_S = 24 * 3600.0


def page_clock(context: Context | None, server_now: float) -> float:
    """The time the session's events are measured against: the page's clock when it sent one
    within a day of ours (a visitor's events carry its times), else ours."""
    sent = epoch_of(context.now) if context is not None else None
    if sent is None or not math.isfinite(sent) or abs(sent - server_now) > PAGE_CLOCK_TRUSTED_S:
        return server_now
    return sent
