"""Benchmark: annotate.winrates on N simulated rankings of K completions, in one run.

    .venv/bin/python bench/winrates_speed.py [--rankings 10000] [--labelers 1] [--resamples 1000]

Each prompt's K = 4 completions come from four models (two policy rounds, the previous one and
the reference, strengths 1.0, 0.8, 0.3 and 0); each of `labelers` labelers ranks them by
Plackett-Luce sampling. Prints the time of one win_rates call and the summary lines.
"""

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate.winrates import summary_line, win_rates  # noqa: E402

STRENGTHS = {"policy-r3": 1.0, "policy-r2": 0.8, "policy-r1": 0.3, "reference": 0.0}


def simulated(rankings: int, labelers: int, rng: random.Random):
    model_of, ranked = {}, []
    for prompt_id in range(rankings // labelers):
        ids = {prompt_id * 10 + n: model for n, model in enumerate(STRENGTHS)}
        model_of.update(ids)
        for _ in range(labelers):
            order = sorted(ids, key=lambda i: math.log(rng.expovariate(1)) - STRENGTHS[ids[i]])
            ranked.append((prompt_id, [[i] for i in order]))
    return ranked, model_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=10_000)
    parser.add_argument("--labelers", type=int, default=1)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rankings, model_of = simulated(args.rankings, args.labelers, random.Random(0))
    started = time.perf_counter()
    result = win_rates(rankings, model_of, reference="reference", resamples=args.resamples)
    elapsed = time.perf_counter() - started
    print(
        f"{len(rankings)} rankings, {result.prompts} prompts, {args.resamples} resamples: "
        f"{elapsed:.2f} s"
    )
    for standing in result.standings:
        print(" ", summary_line(result, standing.model))


if __name__ == "__main__":
    main()
