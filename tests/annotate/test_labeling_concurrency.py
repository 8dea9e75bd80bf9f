"""The labeling invariants under real concurrency: threads, each with its own connection.

Runs on PostgreSQL (CI); SQLite's in-memory test database cannot be shared between threads,
and there every transaction takes the write lock up front, so writers are serialized anyway.
"""

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from annotate import services
from annotate.models import Assignment, Prompt, Ranking, RankingRevision
from config.errors import Conflict

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs it there)")


def make_project(prompts: int, k: int, n: int):
    project = services.project_create(
        created_by=None, slug="race", name="Race", criterion="c",
        completions_per_prompt=k, labelers_per_prompt=n,
    )
    for index in range(prompts):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}")
        for position in range(k):
            prompt.completions.create(position=position, text=f"A{position}")
    return project


def run_threads(count: int, work) -> list[BaseException]:
    """Run work(index) in `count` threads released at once; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int):
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def rank_completions(project, labeler, prompt_id: int, key: str):
    ids = list(Prompt.objects.get(id=prompt_id).completions.values_list("id", flat=True))
    random.shuffle(ids)
    return services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt_id,
                                   tiers=[[i] for i in ids], idempotency_key=key)


def test_many_labelers_at_once_fill_every_slot_and_never_more(make_user):
    project = make_project(prompts=30, k=3, n=3)

    def work_left_for(labeler) -> bool:
        done = Assignment.objects.filter(labeler=labeler).exclude(status="leased")
        open_prompts = Prompt.objects.filter(project=project, ranking_count__lt=3)
        return open_prompts.exclude(id__in=done.values("prompt_id")).exists()

    labelers = [make_user(f"labeler{i}") for i in range(16)]
    for labeler in labelers:
        services.membership_set(project=project, user=labeler, role="labeler")

    def label_until_done(index: int):
        labeler, rng = labelers[index], random.Random(index)
        while True:
            lease = services.assignment_next(project=project, labeler=labeler)
            if lease is None:
                # Others' open leases may still be skipped: wait while work is left for us.
                if not work_left_for(labeler):
                    return
                time.sleep(0.02)
                continue
            if rng.random() < 0.1:
                services.prompt_skip(project=project, labeler=labeler,
                                     prompt_id=lease.prompt_id, reason="unsure")
                continue
            key = f"{labeler.id}-{lease.prompt_id}"
            version, _ = rank_completions(project, labeler, lease.prompt_id, key)
            if rng.random() < 0.2:  # a client retry, the same request: must change nothing
                services.ranking_submit(project=project, labeler=labeler,
                                        prompt_id=lease.prompt_id, tiers=version.tiers,
                                        idempotency_key=key)

    assert run_threads(len(labelers), label_until_done) == []
    counts = Counter(Ranking.objects.values_list("prompt_id", flat=True))
    for prompt in Prompt.objects.filter(project=project):
        assert prompt.ranking_count == counts[prompt.id] == 3, prompt.id
    pairs = Counter(Ranking.objects.values_list("prompt_id", "labeler_id"))
    assert max(pairs.values()) == 1
    assert not RankingRevision.objects.exists()
    assert not Assignment.objects.filter(status="leased").exists()


def test_the_last_open_slot_goes_to_exactly_one_labeler(make_user):
    project = make_project(prompts=1, k=2, n=1)
    labelers = [make_user(f"labeler{i}") for i in range(12)]
    for labeler in labelers:
        services.membership_set(project=project, user=labeler, role="labeler")
    winners = []

    def ask(index: int):
        if services.assignment_next(project=project, labeler=labelers[index]) is not None:
            winners.append(index)

    assert run_threads(len(labelers), ask) == []
    assert len(winners) == 1
    assert Assignment.objects.filter(status="leased").count() == 1


def test_one_request_sent_many_times_at_once_stores_one_ranking(make_user):
    project = make_project(prompts=1, k=4, n=3)
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    lease = services.assignment_next(project=project, labeler=alice)
    ids = list(Prompt.objects.get().completions.values_list("id", flat=True))
    results = []

    def submit(index: int):
        version, created = services.ranking_submit(
            project=project, labeler=alice, prompt_id=lease.prompt_id,
            tiers=[[i] for i in ids], idempotency_key="the-same-key",
        )
        results.append((version.id, created))

    assert run_threads(8, submit) == []
    assert Ranking.objects.count() == 1 and not RankingRevision.objects.exists()
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert Prompt.objects.get().ranking_count == 1


def test_two_different_submissions_at_once_store_one_ranking_and_one_revision(make_user):
    """A double click with two keys (or two tabs): the first is the ranking, the second
    revises it; never two rankings of one prompt by one labeler."""
    project = make_project(prompts=1, k=4, n=3)
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    lease = services.assignment_next(project=project, labeler=alice)
    ids = list(Prompt.objects.get().completions.values_list("id", flat=True))

    def submit(index: int):
        order = ids if index == 0 else ids[::-1]
        services.ranking_submit(project=project, labeler=alice, prompt_id=lease.prompt_id,
                                tiers=[[i] for i in order], idempotency_key=f"tab-{index}")

    assert run_threads(2, submit) == []
    ranking = Ranking.objects.get()
    assert ranking.revision == 2 and RankingRevision.objects.filter(ranking=ranking).count() == 1
    assert Prompt.objects.get().ranking_count == 1
    assert Assignment.objects.get().status == "ranked"


def test_one_key_sent_for_two_prompts_at_once_stores_one_of_them(make_user):
    """A client that reuses a key: the first request stores its ranking, the other is
    refused (409, naming the prompt the key went to), so no success hides a lost ranking."""
    project = make_project(prompts=2, k=2, n=3)
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    first = services.assignment_next(project=project, labeler=alice)
    services.ranking_submit(project=project, labeler=alice, prompt_id=first.prompt_id,
                            tiers=ranked_tiers(first.prompt_id), idempotency_key="k0")
    second = services.assignment_next(project=project, labeler=alice)
    results = []

    def submit(index: int):
        prompt_id = (first, second)[index].prompt_id  # a revision, and a first ranking
        try:
            version, created = services.ranking_submit(
                project=project, labeler=alice, prompt_id=prompt_id,
                tiers=ranked_tiers(prompt_id)[::-1], idempotency_key="reused")
        except Conflict as refused:
            results.append(str(refused))
        else:
            results.append(created)

    assert run_threads(2, submit) == []
    [refusal] = [r for r in results if isinstance(r, str)]
    assert [r for r in results if not isinstance(r, str)] == [True]
    assert "idempotency_key 'reused' was already used for your ranking of prompt" in refusal
    assert Ranking.objects.filter(idempotency_key="reused").count() == 1


def ranked_tiers(prompt_id: int) -> list[list[int]]:
    return [[i] for i in Prompt.objects.get(id=prompt_id).completions.values_list("id",
                                                                                  flat=True)]
