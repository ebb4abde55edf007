import math

import msgspec
import numpy as np
import pytest

from edge.bandits import ALL_SEGMENTS, Bandit, BanditPolicy
from tests.edge import small_bundle as shop

# A known best banner per segment: the click rate of each arm, by segment.
CTR = {"loyal": [0.04, 0.10, 0.03], "lapsed": [0.09, 0.03, 0.05]}


def banner(priors=None, by_segment=True) -> Bandit:
    return msgspec.convert(
        {
            "slot": "home-banner",
            "arms": [{"name": f"b{i}", "content": {"banner": f"b{i}"}} for i in range(3)],
            "by_segment": by_segment,
            "priors": priors or {s: [(1.0, 1.0)] * 3 for s in [*CTR, ALL_SEGMENTS]},
        },
        Bandit,
    )


def run(policy: BanditPolicy, rounds: int, seed: int) -> tuple[float, list[str]]:
    rng = np.random.default_rng(seed)
    regret, late = 0.0, []
    for t in range(rounds):
        segment = "loyal" if t % 2 else "lapsed"
        choice = policy.choose("home-banner", segment)
        arm = int(choice.arm[1:])
        regret += max(CTR[segment]) - CTR[segment][arm]
        policy.record("home-banner", choice.arm, segment, clicked=False)
        if rng.random() < CTR[segment][arm]:
            policy.record("home-banner", choice.arm, segment, clicked=True)
        if t >= rounds - 1_000:
            late.append(f"{segment}:{choice.arm}")
    return regret, late


def test_thompson_sampling_finds_each_segments_best_banner(seed):
    rounds = 6_000
    regret, late = run(BanditPolicy([banner()], seed=seed), rounds, seed)
    uniform = rounds * np.mean([max(c) - np.mean(c) for c in CTR.values()])
    assert regret < 0.35 * uniform
    assert late.count("loyal:b1") + late.count("lapsed:b0") > 0.8 * len(late)


def test_one_pool_for_every_segment_cannot_serve_both(seed):
    per_segment, _ = run(BanditPolicy([banner()], seed=seed), 6_000, seed)
    pooled, _ = run(BanditPolicy([banner(by_segment=False)], seed=seed), 6_000, seed)
    assert per_segment < pooled


def test_priors_from_export_steer_the_first_choices_and_propensities_are_honest(seed):
    sure = {ALL_SEGMENTS: [(1.0, 99.0), (60.0, 40.0), (1.0, 99.0)]}
    policy = BanditPolicy([banner(priors=sure)], seed=seed)
    choices = [policy.choose("home-banner", "unknown segment") for _ in range(200)]
    assert sum(c.arm == "b1" for c in choices) > 190
    assert all(c.propensity > 0.9 for c in choices if c.arm == "b1")
    even = BanditPolicy([banner()], seed=seed)
    shares = [even.choose("home-banner", "loyal").propensity for _ in range(300)]
    assert np.mean(shares) == pytest.approx(1 / 3, abs=0.05)  # no data: a third each


def test_feedback_for_another_slot_or_arm_is_ignored(seed):
    policy = BanditPolicy([banner()], seed=seed)
    assert policy.record("footer", "b1", "loyal", clicked=True) is False
    assert policy.record("home-banner", "b9", "loyal", clicked=True) is False
    assert policy.seen == {}
    assert policy.record("home-banner", "b1", "loyal", clicked=True) is True


def test_answers_fill_the_slots_asked_for_and_verified_feedback_teaches_the_node(
    small_bundle, seed
):
    import dataclasses
    import time

    from edge.app import learn_from
    from edge.decisions import DecisionSigner, FeedbackGate
    from edge.errors import ValidationError
    from edge.recommend import Recommender
    from edge.schemas import FeedbackBatch, RecommendRequest

    recommender = Recommender(
        dataclasses.replace(small_bundle, bandits=(banner(),)), budget_ms=math.inf
    )
    answer = recommender.recommend(RecommendRequest(slots=["home-banner"]))
    choice = answer.slots["home-banner"]
    assert choice.arm in ("b0", "b1", "b2") and choice.content == {"banner": choice.arm}
    assert 0.0 < choice.propensity <= 1.0
    assert Recommender(small_bundle).recommend(RecommendRequest()).slots == {}
    with pytest.raises(ValidationError, match="slot 'footer' is not one this bundle's bandits"):
        recommender.recommend(RecommendRequest(slots=["footer"]))
    user = next(u for u, p in small_bundle.profiles.as_dict().items() if p.segment)
    request = RecommendRequest(user_id=user, slots=["home-banner"])
    signer = DecisionSigner(bytes(32))
    answer = signer.stamp(request, recommender.recommend(request))
    arm = answer.slots["home-banner"].arm
    shown = {"slot": "home-banner", "variant": arm, "item_id": "-", "user_id": user}
    events = [
        {**shown, "type": "impression", "decision_id": answer.decision_id},
        {**shown, "type": "click", "decision_id": answer.decision_id},
        {**shown, "type": "purchase", "decision_id": answer.decision_id},
        {**shown, "type": "click"},  # quotes no decision: stored, but teaches nothing
    ]
    batch = msgspec.convert({"events": events}, FeedbackBatch)
    gate = FeedbackGate(signer)
    assert learn_from(recommender.bandits, gate, batch, time.time()) == 2
    [(key, seen)] = recommender.bandits.seen.items()
    assert key == ("home-banner", answer.segment)  # the decision's segment, the visitor's own
    assert answer.segment in shop.CLUSTERS
    index = int(arm[1:])
    assert seen[index].tolist() == [1.0, 1.0]  # one impression, one click; the purchase is not one
    assert seen.sum() == 2.0


def two_banners(priors: dict | None = None) -> Bandit:
    """A slot of two arms, per segment, with no logged prior but everyone's flat one: what
    export writes when the build had no bandit log."""
    return msgspec.convert(
        {
            "slot": "home-banner",
            "arms": [{"name": "A"}, {"name": "B"}],
            "priors": priors or {ALL_SEGMENTS: [(1.0, 1.0)] * 2},
        },
        Bandit,
    )


def test_without_a_bandit_log_each_segment_still_learns_from_its_own_traffic(seed):
    policy = BanditPolicy([two_banners()], seed=seed, segments=["high_value", "lapsed"])
    for _ in range(300):  # one high-value customer clicks B every time it is shown
        policy.record("home-banner", "B", "high_value", clicked=False)
        policy.record("home-banner", "B", "high_value", clicked=True)
    for segment in ("lapsed", None):  # None: anonymous, or no consent
        arms = [policy.choose("home-banner", segment).arm for _ in range(40)]
        # Nothing learned for them: Thompson draws from flat priors, half each. Both arms
        # appear unless 40 fair coins all land alike (2 in a trillion).
        assert set(arms) == {"A", "B"}, (segment, arms)
    high_value = [policy.choose("home-banner", "high_value").arm for _ in range(40)]
    assert high_value.count("B") >= 38
    assert set(policy.seen) == {("home-banner", "high_value")}


def test_a_segment_the_bundle_does_not_know_adds_no_key_of_its_own(seed):
    policy = BanditPolicy([two_banners()], seed=seed, segments=["high_value", "lapsed"])
    for i in range(1_000):
        policy.record("home-banner", "A", f"made-up-{i}", clicked=True)
    policy.record("home-banner", "A", "lapsed", clicked=True)
    policy.record("home-banner", "A", None, clicked=True)
    assert set(policy.seen) == {("home-banner", ALL_SEGMENTS), ("home-banner", "lapsed")}
    assert policy.seen[("home-banner", ALL_SEGMENTS)][0].tolist() == [0.0, 1_001.0]
    assert policy.key("home-banner", "made-up-7") == ALL_SEGMENTS


def test_a_segment_starts_from_its_own_prior_else_everyones(seed):
    priors = {ALL_SEGMENTS: [(2.0, 8.0), (3.0, 7.0)], "lapsed": [(9.0, 1.0), (1.0, 9.0)]}
    policy = BanditPolicy([two_banners(priors)], seed=seed, segments=["high_value", "lapsed"])
    assert policy.posterior("home-banner", "lapsed").tolist() == [[9.0, 1.0], [1.0, 9.0]]
    assert policy.posterior("home-banner", "high_value").tolist() == [[2.0, 8.0], [3.0, 7.0]]
    policy.record("home-banner", "B", "high_value", clicked=False)
    assert policy.posterior("home-banner", "high_value").tolist() == [[2.0, 8.0], [3.0, 8.0]]
    assert policy.posterior("home-banner", None).tolist() == [[2.0, 8.0], [3.0, 7.0]]


def test_one_pool_when_the_slot_does_not_learn_per_segment(seed):
    pooled = msgspec.structs.replace(two_banners(), by_segment=False)
    policy = BanditPolicy([pooled], seed=seed, segments=["high_value", "lapsed"])
    policy.record("home-banner", "B", "high_value", clicked=True)
    policy.record("home-banner", "B", "lapsed", clicked=True)
    assert list(policy.seen) == [("home-banner", ALL_SEGMENTS)]


def test_a_node_serving_a_bundle_without_a_bandit_log_learns_per_segment(small_bundle, seed):
    """The real loop: answers stamped with decision ids, feedback through the gate. A spender
    clicks B whenever shown it; a browser and a visitor without consent learn nothing from it."""
    import dataclasses
    import time

    from edge.app import learn_from
    from edge.decisions import DecisionSigner, FeedbackGate
    from edge.recommend import Recommender
    from edge.schemas import FeedbackBatch, RecommendRequest

    # No latency budget: on a busy machine a late answer is a fallback, without slots.
    bundle = dataclasses.replace(small_bundle, bandits=(two_banners(),))
    recommender = Recommender(bundle, budget_ms=math.inf)
    recommender.bandits._rng = np.random.default_rng(seed)  # the node's own policy, seeded
    signer = DecisionSigner(bytes(32))
    gate = FeedbackGate(signer)
    spender = RecommendRequest(user_id="u-regular", k=1, slots=["home-banner"])
    for _ in range(300):
        answer = signer.stamp(spender, recommender.recommend(spender))
        arm = answer.slots["home-banner"].arm
        shown = {"slot": "home-banner", "variant": arm, "item_id": "-", "user_id": "u-regular"}
        events = [{**shown, "type": "impression", "decision_id": answer.decision_id}]
        if arm == "B":
            events.append({**shown, "type": "click", "decision_id": answer.decision_id})
        batch = msgspec.convert({"events": events}, FeedbackBatch)
        assert learn_from(recommender.bandits, gate, batch, time.time()) == len(events)
    assert answer.segment == "spenders"
    assert set(recommender.bandits.seen) == {("home-banner", "spenders")}
    others = {
        "browsers": RecommendRequest(user_id="u-loyal", k=1, slots=["home-banner"]),
        "no consent": RecommendRequest(consent=False, k=1, slots=["home-banner"]),
    }
    for who, request in others.items():
        arms = [recommender.recommend(request).slots["home-banner"].arm for _ in range(40)]
        assert set(arms) == {"A", "B"}, (who, arms)
    served = [recommender.recommend(spender).slots["home-banner"].arm for _ in range(40)]
    assert served.count("B") >= 36
