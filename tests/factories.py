"""Test data made in the tests: prompt records, files in each format."""

import gzip
import json


def prompt_record(index: int, k: int = 4, **overrides) -> dict:
    record = {
        "id": f"p{index}",
        "prompt": f"Question number {index}?",
        "completions": [f"Answer {index}.{j}" for j in range(k)],
    }
    record.update(overrides)
    return record


def jsonl_bytes(records, *, compress: bool = False) -> bytes:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    data = ("\n".join(lines) + "\n").encode()
    return gzip.compress(data) if compress else data


def hh_transcript(*turns: str) -> str:
    """hh_transcript("hi", "hello") -> "\n\nHuman: hi\n\nAssistant: hello"."""
    speakers = ("Human", "Assistant")
    return "".join(f"\n\n{speakers[i % 2]}: {turn}" for i, turn in enumerate(turns))


def hh_record(question: str, chosen: str, rejected: str, history: tuple[str, ...] = ()) -> dict:
    return {
        "chosen": hh_transcript(*history, question, chosen),
        "rejected": hh_transcript(*history, question, rejected),
    }


def rank_at_random(project, labelers, *, seed: int | None = 0) -> None:
    """Each labeler joins `project` and ranks every prompt leased to them, in a random order
    (seed None: the completions' own order)."""
    import random

    from annotate import services
    from annotate.models import Prompt

    rng = random.Random(seed)
    for labeler in labelers:
        services.membership_set(project=project, user=labeler, role="labeler")
        while lease := services.assignment_next(project=project, labeler=labeler):
            ids = list(Prompt.objects.get(id=lease.prompt_id)
                       .completions.values_list("id", flat=True))
            if seed is not None:
                rng.shuffle(ids)
            services.ranking_submit(project=project, labeler=labeler, prompt_id=lease.prompt_id,
                                    tiers=[[i] for i in ids],
                                    idempotency_key=f"{labeler.username}-{ids}")
