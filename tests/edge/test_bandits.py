import msgspec
import numpy as np
import pytest

from edge.bandits import ALL_SEGMENTS, Bandit, BanditPolicy

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

    recommender = Recommender(dataclasses.replace(small_bundle, bandits=(banner(),)))
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
    assert key == ("home-banner", ALL_SEGMENTS)  # its segment has no prior of its own
    index = int(arm[1:])
    assert seen[index].tolist() == [1.0, 1.0]  # one impression, one click; the purchase is not one
    assert seen.sum() == 2.0
