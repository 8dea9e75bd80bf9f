"""Benchmark: the agreement metrics of annotate.agreement on N random rankings, in one run.

    .venv/bin/python bench/agreement_speed.py [--rankings 100000] [--k 4] [--labelers 3]

Generates N rankings: N / labelers prompts of K completions, each ranked by `labelers`
labelers drawn from a pool of 60; a labeler orders a prompt's completions by a shared latent
quality plus noise, ties two neighbours 10% of the time, and saw the completions in a random
order. Then times each metric once over all of them (pure Python, one process, no database)
and prints one table.
"""

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate.agreement import (  # noqa: E402
    PositionRecord,
    agreement_histogram,
    gold_accuracy,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    labeler_pair_taus,
    leave_one_out_agreement,
    mean_pairwise_agreement,
    pairwise_agreement,
    position_bias,
    position_bias_by_labeler,
)
from annotate.consensus import LabeledRanking, rankings_by_prompt  # noqa: E402

LABELER_POOL = 60


def noisy_tiers(qualities: dict[int, float], rng: random.Random) -> list[list[int]]:
    order = sorted(qualities, key=lambda i: -(qualities[i] + rng.gauss(0, 1)))
    tiers = [[completion_id] for completion_id in order]
    if len(tiers) > 1 and rng.random() < 0.1:
        place = rng.randrange(len(tiers) - 1)
        tiers[place:place + 2] = [tiers[place] + tiers[place + 1]]
    return tiers


def generate(rankings: int, k: int, labelers: int, seed: int):
    rng = random.Random(seed)
    pool = [f"labeler-{i:02d}" for i in range(LABELER_POOL)]
    labeled, records = [], []
    for prompt_id in range(-(-rankings // labelers)):
        qualities = {prompt_id * k + j: rng.gauss(0, 1) for j in range(k)}
        for labeler in rng.sample(pool, labelers):
            if len(labeled) == rankings:
                break
            tiers = noisy_tiers(qualities, rng)
            shown = list(qualities)
            rng.shuffle(shown)
            labeled.append(LabeledRanking(prompt_id, labeler, tiers))
            records.append(PositionRecord(labeler, shown, tiers))
    return labeled, records


def timed(run: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--labelers", type=int, default=3, help="labelers per prompt")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    labeled, records = generate(args.rankings, args.k, args.labelers, args.seed)
    groups = [[r.tiers for r in group] for _, group in rankings_by_prompt(labeled)]
    pairs = [(a, b) for tiers in groups for i, a in enumerate(tiers) for b in tiers[i + 1:]]
    references = [(tiers[0], tiers[1]) for tiers in groups if len(tiers) > 1]
    agreements = [pairwise_agreement(a, b) for a, b in pairs]
    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("pairwise_agreement (pairs)", len(pairs),
         lambda: [pairwise_agreement(a, b) for a, b in pairs]),
        ("mean_pairwise_agreement (prompts)", len(groups),
         lambda: [mean_pairwise_agreement(tiers) for tiers in groups]),
        ("kendall_tau_b (pairs)", len(pairs), lambda: [kendall_tau_b(a, b) for a, b in pairs]),
        ("labeler_pair_taus", 1, lambda: labeler_pair_taus(labeled)),
        ("krippendorff_alpha_ordinal", 1, lambda: krippendorff_alpha_ordinal(labeled)),
        ("leave_one_out_agreement", 1, lambda: leave_one_out_agreement(labeled)),
        ("position_bias", 1, lambda: position_bias(records)),
        ("position_bias_by_labeler", 1, lambda: position_bias_by_labeler(records)),
        ("gold_accuracy ranking (prompts)", len(references),
         lambda: [gold_accuracy(a, b) for a, b in references]),
        ("gold_accuracy best (prompts)", len(references),
         lambda: [gold_accuracy(a, b, mode="best") for a, b in references]),
        ("agreement_histogram (values)", len(agreements),
         lambda: agreement_histogram(agreements)),
    ]
    print(f"Agreement metrics on {len(labeled):,} rankings: {len(groups):,} prompts x "
          f"{args.labelers} labelers (pool {LABELER_POOL}), K={args.k}, Python "
          f"{sys.version.split()[0]}")
    print(f"{'metric':<36} {'calls':>8} {'seconds':>8} {'us/call':>9}  result")
    for name, calls, run in cases:
        seconds, result = timed(run)
        shown = result if isinstance(result, float | None) else f"{type(result).__name__}"
        if name == "krippendorff_alpha_ordinal":
            shown = f"alpha = {result:.4f}"
        elif name == "position_bias":
            shown = f"first shown top {result.first_shown_top_share:.3f}, expected " \
                    f"{result.expected_share:.3f}"
        elif name == "leave_one_out_agreement":
            shown = f"{len(result)} labelers"
        print(f"{name:<36} {calls:>8,} {seconds:>8.2f} {seconds / calls * 1e6:>9,.1f}  {shown}")


if __name__ == "__main__":
    main()
