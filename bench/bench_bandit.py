"""Cumulative regret of the edge's Thompson sampling on a simulated run where the best banner
differs by segment and is known. Segments and their shares are the million-event simulator's
(`edgeperso export` on it finds these three); click rates per banner are set here. Compares
Thompson per segment (what ships), Thompson pooled over segments (`by_segment = false`) and a
uniform random choice. Reports, asserts nothing.

    python bench/bench_bandit.py [--visits 30000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.bandits import ALL_SEGMENTS, Bandit, BanditPolicy  # noqa: E402

SHARES = {
    "high-value loyal": 8042,
    "low-spending occasional customers": 7718,
    "low-spending cart abandoners": 2310,
}
CTR = {  # banners: new arrivals, loyalty discount, free shipping
    "high-value loyal": [0.060, 0.045, 0.030],
    "low-spending occasional customers": [0.020, 0.025, 0.035],
    "low-spending cart abandoners": [0.030, 0.020, 0.070],
}
CHECKPOINTS = (1_000, 5_000, 10_000, 30_000)


def bandit(by_segment: bool) -> Bandit:
    arms = [{"name": n} for n in ("new-arrivals", "loyalty-discount", "free-shipping")]
    priors = {s: [(1.0, 1.0)] * 3 for s in [*SHARES, ALL_SEGMENTS]}
    return msgspec.convert(
        {"slot": "home", "arms": arms, "by_segment": by_segment, "priors": priors}, Bandit
    )


def run(policy: BanditPolicy | None, visits: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    names = list(SHARES)
    p = np.array(list(SHARES.values()), dtype=float)
    segments = rng.choice(len(names), visits, p=p / p.sum())
    regret, out, best = 0.0, {}, []
    for t, s in enumerate(segments, start=1):
        segment = names[s]
        if policy is None:
            arm = int(rng.integers(3))
        else:
            arm = [a.name for a in policy.bandits["home"].arms].index(
                policy.choose("home", segment).arm
            )
        ctr = CTR[segment]
        regret += max(ctr) - ctr[arm]
        best.append(arm == int(np.argmax(ctr)))
        if policy is not None:
            name = policy.bandits["home"].arms[arm].name
            policy.record("home", name, segment, clicked=False)
            if rng.random() < ctr[arm]:
                policy.record("home", name, segment, clicked=True)
        if t in CHECKPOINTS:
            out[f"regret@{t}"] = regret
    out["best_share_last_5000"] = float(np.mean(best[-5_000:]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--visits", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bandit.json"))
    args = parser.parse_args()
    policies = {
        "thompson per segment": lambda seed: BanditPolicy([bandit(True)], seed=seed),
        "thompson pooled": lambda seed: BanditPolicy([bandit(False)], seed=seed),
        "uniform random": lambda seed: None,
    }
    results = {}
    for name, make in policies.items():
        runs = [run(make(seed), args.visits, seed) for seed in range(args.seeds)]
        results[name] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"ctr": CTR, "results": results}, indent=2) + "\n")
    columns = [k for k in results["uniform random"] if k.startswith("regret@")]
    print(
        f"cumulative regret (clicks lost against the best banner per segment), median of "
        f"{args.seeds} seeds"
    )
    print(f"  {'policy':<22}" + "".join(f"{c:>14}" for c in columns) + f"{'best, last 5k':>15}")
    for name, r in results.items():
        row = "".join(f"{r[c]:>14.1f}" for c in columns)
        print(f"  {name:<22}{row}{r['best_share_last_5000']:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
