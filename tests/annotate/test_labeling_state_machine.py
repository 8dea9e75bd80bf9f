"""The labeling rules as a state machine: any sequence of steps keeps the invariants.

Three labelers (ann, ben, cat) work on two prompts of three completions, two rankings
each, with adaptive overlap asking for a third when the two disagree. The same machine runs
on a rank project and on a rate project, whose labelers score each completion on two aspects
(1 to 3) and whose stored tiers are the ones their scores imply. Hypothesis runs random
sequences of: claim the next prompt, submit a ranking (or a revision), retry an earlier
submission with its idempotency key, skip, renew a lease, let the clock run past leases, and
build an export. The services take the time as `now`, so the clock is the machine's own.

After every step:
- a labeler has at most one final ranking of a prompt, and a ranked lease for each;
- a prompt's ranking count is its rankings, never past its target (N plus what adaptive
  overlap added, at most adaptive_max_labelers);
- open leases never hold more slots than the prompt has left;
- the database holds what the machine expects: which rankings exist, and at which revision;
  a rating's tiers are the ones its scores imply.
Each step also checks its own answer against the rules (who may claim, submit, skip or renew
what, and the status when refused); a retry changes nothing and returns what it stored first;
an export's rankings.jsonl has exactly the database's rankings, one record each (with its
scores, for a rating).

Each example runs in a savepoint rolled back at its end, so the same test runs on SQLite and
on PostgreSQL.
"""

import json
from collections import Counter
from datetime import timedelta
from itertools import count

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from annotate import services
from annotate.models import Assignment, Project, Prompt, Ranking, RankingRevision
from annotate.ratings import tiers_from_scores
from config.errors import ApplicationError, status_of

pytestmark = pytest.mark.django_db

N = 2  # labelers per prompt
MAX_LABELERS = 3  # adaptive overlap asks for one more at most
K = 3
PROMPTS = 2  # few, so labelers contend for the same slots
LEASE = timedelta(minutes=30)
NAMES = ("ann", "ben", "cat")
ASPECTS = ("helpfulness", "honesty")  # a rate project's
SCALE = (1, 3)  # few points: equal scores (ties) and disagreements are common
labeler_names = st.sampled_from(NAMES)


def random_tiers(draw, completion_ids: list[int]) -> list[list[int]]:
    """A valid ranking of the completions: a random order, sometimes with ties."""
    order = draw(st.permutations(completion_ids))
    cuts = draw(st.lists(st.booleans(), min_size=len(order) - 1, max_size=len(order) - 1))
    tiers = [[order[0]]]
    for completion_id, tie in zip(order[1:], cuts, strict=True):
        if tie and len(tiers[-1]) < len(order) - 1:
            tiers[-1].append(completion_id)
        else:
            tiers.append([completion_id])
    return tiers


class LabelingMachine(RuleBasedStateMachine):
    # Set by the test: the project, its labelers and prompts, made once for every example.
    project = None
    labelers: dict = {}
    prompt_ids: list[int] = []
    completion_ids: dict[int, list[int]] = {}
    var_dirs = None

    def __init__(self):
        super().__init__()
        # Everything an example writes is undone at its end (see teardown).
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        var_dir = next(self.var_dirs)
        var_dir.mkdir()
        self._files = override_settings(VAR_DIR=var_dir)
        self._files.enable()
        self.now = timezone.now()
        self.keys = count(1)
        self.ranked: dict[tuple[int, str], int] = {}  # (prompt, labeler) -> revision
        self.scores: dict[tuple[int, str], dict] = {}  # a rating's latest scores, likewise
        self.submitted: dict[str, tuple[str, int, dict, int]] = {}  # key -> what it stored

    def teardown(self):
        self._files.disable()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- what a labeler sends, and what is stored of it ------------------------------------

    def rating(self) -> bool:
        return self.project.annotation_mode == Project.Mode.RATE

    def answer(self, draw, prompt_id: int) -> dict:
        """A valid answer for the prompt: a ranking (tiers) or a rating (scores)."""
        completion_ids = self.completion_ids[prompt_id]
        if not self.rating():
            return {"tiers": random_tiers(draw, completion_ids)}
        score = st.integers(*SCALE)
        return {"scores": {str(completion_id): {aspect: draw(score) for aspect in ASPECTS}
                           for completion_id in completion_ids}}

    def stored(self, answer: dict) -> tuple[list, dict | None]:
        """The tiers and scores a ranking stores for `answer`."""
        if "scores" in answer:
            return tiers_from_scores(answer["scores"]), answer["scores"]
        return answer["tiers"], None

    # --- what the rules say, read from the database before a step --------------------------

    def assignment(self, name: str, prompt_id: int) -> Assignment | None:
        return Assignment.objects.filter(prompt_id=prompt_id, labeler=self.labelers[name]).first()

    def active_leases(self, prompt_id: int, excluding: str | None = None) -> int:
        leases = Assignment.objects.filter(prompt_id=prompt_id, status=Assignment.Status.LEASED,
                                           expires_at__gt=self.now)
        if excluding:
            leases = leases.exclude(labeler=self.labelers[excluding])
        return leases.count()

    def slots_left(self, prompt_id: int, excluding: str | None = None) -> int:
        prompt = Prompt.objects.get(id=prompt_id)
        target = N + prompt.extra_rankings
        return target - prompt.ranking_count - self.active_leases(prompt_id, excluding)

    def open_for(self, name: str) -> set[int]:
        """Prompts `name` may be handed: not ranked or skipped by them, with a slot left."""
        done = set(Assignment.objects.filter(labeler=self.labelers[name]).exclude(
            status=Assignment.Status.LEASED).values_list("prompt_id", flat=True))
        return {p for p in self.prompt_ids if p not in done and self.slots_left(p, name) > 0}

    def my_active_leases(self, name: str) -> list[Assignment]:
        return list(Assignment.objects.filter(
            labeler=self.labelers[name], status=Assignment.Status.LEASED,
            expires_at__gt=self.now).order_by("leased_at"))

    def leased(self) -> list[tuple[str, int]]:
        """(labeler, prompt) of every lease not closed yet, open or expired."""
        return sorted(Assignment.objects.filter(status=Assignment.Status.LEASED)
                      .values_list("labeler__username", "prompt_id"))

    def expected_submit(self, name: str, prompt_id: int) -> str | int:
        """'revise', 'create', or the status a refusal answers."""
        if (prompt_id, name) in self.ranked:
            return "revise"
        assignment = self.assignment(name, prompt_id)
        if assignment is None or assignment.status != Assignment.Status.LEASED:
            return 404
        prompt = Prompt.objects.get(id=prompt_id)
        if prompt.ranking_count >= N + prompt.extra_rankings:
            return 409
        if assignment.expires_at <= self.now and self.slots_left(prompt_id, name) <= 0:
            return 409
        return "create"

    # --- the steps ---------------------------------------------------------------------------

    @rule(name=labeler_names)
    def claim(self, name):
        already = self.my_active_leases(name)
        open_prompts = self.open_for(name)
        lease = services.assignment_next(project=self.project, labeler=self.labelers[name],
                                         now=self.now)
        if already:
            assert lease is not None and lease.id == already[0].id, "the open lease comes back"
        elif lease is None:
            assert not open_prompts, f"{name} got nothing while {open_prompts} had slots"
        else:
            assert lease.prompt_id in open_prompts, "a prompt without a slot was handed out"
            assert lease.status == Assignment.Status.LEASED
            assert lease.expires_at == self.now + LEASE

    @rule(order=st.permutations(NAMES))
    def everyone_claims(self, order):
        """A busy moment: every labeler asks for a prompt, one after another."""
        for name in order:
            self.claim(name)

    @precondition(lambda self: self.ranked or self.leased())
    @rule(data=st.data())
    def submit(self, data):
        """A labeler submits for a prompt leased to them (open or expired), or revises."""
        ranked = sorted((name, prompt_id) for prompt_id, name in self.ranked)
        self.submit_as(*data.draw(st.sampled_from(self.leased() + ranked)), data)

    def submit_as(self, name, prompt_id, data):
        answer = self.answer(data.draw, prompt_id)
        expected = self.expected_submit(name, prompt_id)
        key = f"{name}-{next(self.keys)}"
        try:
            version, created = services.ranking_submit(
                project=self.project, labeler=self.labelers[name], prompt_id=prompt_id,
                idempotency_key=key, now=self.now, **answer)
        except ApplicationError as refused:
            got = status_of(refused)
            assert got == expected, f"refused {got}, expected {expected}"
            return
        assert expected in ("create", "revise"), f"accepted, but expected {expected}"
        revision = self.ranked.get((prompt_id, name), 0) + 1
        assert created and version.revision == revision
        assert (version.tiers, version.scores) == self.stored(answer)
        self.ranked[(prompt_id, name)] = revision
        if self.rating():
            self.scores[(prompt_id, name)] = answer["scores"]
        self.submitted[key] = (name, prompt_id, answer, revision)
        assert self.assignment(name, prompt_id).status == Assignment.Status.RANKED

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def retry(self, data):
        """The client sends an earlier request again (a lost answer): nothing changes. The
        same key with another answer is refused (409), and nothing changes either: for a
        rating, other scores too, even when they imply the same tiers."""
        key = data.draw(st.sampled_from(sorted(self.submitted)), label="key")
        name, prompt_id, answer, revision = self.submitted[key]
        other = self.answer(data.draw, prompt_id)
        before = self.rows()
        version, created = services.ranking_submit(
            project=self.project, labeler=self.labelers[name], prompt_id=prompt_id,
            idempotency_key=key, now=self.now, **answer)
        assert not created
        assert (version.revision, version.tiers, version.scores) == (
            revision, *self.stored(answer)), "not what it stored"
        if self.stored(other) != self.stored(answer):
            try:
                services.ranking_submit(
                    project=self.project, labeler=self.labelers[name], prompt_id=prompt_id,
                    idempotency_key=key, now=self.now, **other)
            except ApplicationError as refused:
                assert status_of(refused) == 409
            else:
                raise AssertionError("a key reused for another ranking was accepted")
        assert self.rows() == before, "a retry changed rows"

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def skip(self, data):
        self.skip_as(*data.draw(st.sampled_from(self.leased())))

    def skip_as(self, name, prompt_id):
        assignment = self.assignment(name, prompt_id)
        may_skip = assignment is not None and assignment.status == Assignment.Status.LEASED
        try:
            services.prompt_skip(project=self.project, labeler=self.labelers[name],
                                 prompt_id=prompt_id, reason="unsure", now=self.now)
        except ApplicationError as refused:
            assert not may_skip and status_of(refused) == 404
            return
        assert may_skip, "skipped a prompt not leased to them"
        assert self.assignment(name, prompt_id).status == Assignment.Status.SKIPPED

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def renew(self, data):
        self.renew_as(*data.draw(st.sampled_from(self.leased())))

    def renew_as(self, name, prompt_id):
        assignment = self.assignment(name, prompt_id)
        if assignment is None or assignment.status != Assignment.Status.LEASED:
            expected = 404
        elif assignment.expires_at <= self.now and self.slots_left(prompt_id, name) <= 0:
            expected = 409
        else:
            expected = "renewed"
        try:
            renewed = services.lease_renew(project=self.project, labeler=self.labelers[name],
                                           prompt_id=prompt_id, now=self.now)
        except ApplicationError as refused:
            got = status_of(refused)
            assert got == expected, f"refused {got}, expected {expected}"
            return
        assert expected == "renewed" and renewed.expires_at == self.now + LEASE

    @rule(name=labeler_names, index=st.integers(0, PROMPTS - 1),
          action=st.sampled_from(["submit", "skip", "renew"]), data=st.data())
    def stray(self, name, index, action, data):
        """A request about any prompt, leased to them or not: the rules decide."""
        prompt_id = self.prompt_ids[index]
        if action == "submit":
            self.submit_as(name, prompt_id, data)
        elif action == "skip":
            self.skip_as(name, prompt_id)
        else:
            self.renew_as(name, prompt_id)

    @rule(minutes=st.sampled_from([10, 31]))  # 31: past every open lease
    def time_passes(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule()
    def export(self):
        params = services.ExportParams(min_votes=1, exclude_flagged=False,
                                       formats=("trl-jsonl",))
        export = services.export_create(project=self.project, params=params, created_by=None,
                                        run_now=True)
        path = services.export_file_path(export, "rankings.jsonl")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        in_db = Ranking.objects.filter(prompt__project=self.project, source="labeler")
        assert len(records) == in_db.count() == export.counts["rankings"]
        pseudonym = {services.labeler_pseudonym(self.project.id, user.id): name
                     for name, user in self.labelers.items()}
        exported = {(r["prompt_id"], pseudonym[r["labeler"]]): r for r in records}
        assert len(exported) == len(records), "a ranking was exported twice"
        assert {pair: r["revision"] for pair, r in exported.items()} == self.ranked
        assert {pair: r["scores"] for pair, r in exported.items() if "scores" in r} == (
            self.scores), "a rating's scores are not what the labeler sent last"

    # --- invariants ----------------------------------------------------------------------------

    def rows(self) -> dict:
        return {
            "rankings": list(Ranking.objects.order_by("id").values()),
            "revisions": list(RankingRevision.objects.order_by("id").values()),
            "assignments": list(Assignment.objects.order_by("id").values()),
            "prompts": list(Prompt.objects.order_by("id").values()),
        }

    @invariant()
    def rankings_leases_and_counts_agree_with_the_rules(self):
        """All the invariants, from four queries (they run after every step)."""
        prompts = {p.id: p for p in Prompt.objects.filter(id__in=self.prompt_ids)}
        rankings = list(Ranking.objects.values_list("prompt_id", "labeler__username",
                                                    "revision", "id"))
        if self.rating():  # a rating's tiers are its scores' (its history kept likewise)
            for tiers, scores in [*Ranking.objects.values_list("tiers", "scores"),
                                  *RankingRevision.objects.values_list("tiers", "scores")]:
                assert tiers == tiers_from_scores(scores), "tiers that its scores do not imply"
        kept = Counter(RankingRevision.objects.values_list("ranking_id", flat=True))
        assignments = list(Assignment.objects.values_list("prompt_id", "labeler__username",
                                                          "status", "expires_at"))
        # At most one final ranking per (prompt, labeler), each with its lease closed as ranked.
        pairs = Counter((prompt_id, name) for prompt_id, name, _, _ in rankings)
        assert max(pairs.values(), default=1) == 1, "two final rankings of one prompt"
        ranked_leases = {(p, name) for p, name, status, _ in assignments if status == "ranked"}
        assert ranked_leases == set(pairs), "rankings and ranked leases differ"
        # The database holds what the machine saw accepted, each earlier version kept.
        assert {(p, name): revision for p, name, revision, _ in rankings} == self.ranked
        for _, _, revision, ranking_id in rankings:
            assert kept[ranking_id] == revision - 1, "a revision lost its history"
        # Overlap: never more rankings than the target, nor open leases than slots left.
        per_prompt = Counter(prompt_id for prompt_id, _, _, _ in rankings)
        open_leases = Counter(p for p, _, status, expires_at in assignments
                              if status == "leased" and expires_at > self.now)
        for prompt_id, prompt in prompts.items():
            target = N + prompt.extra_rankings
            assert prompt.ranking_count == per_prompt[prompt_id], "ranking_count is off"
            assert prompt.ranking_count <= target <= MAX_LABELERS, "overlap exceeded"
            assert open_leases[prompt_id] <= target - prompt.ranking_count, (
                f"prompt {prompt_id}: {open_leases[prompt_id]} open leases, "
                f"{target - prompt.ranking_count} slots left")


@pytest.fixture(params=["rank", "rate"])
def labeling_world(request, make_user, tmp_path):
    rating = {"annotation_mode": "rate", "rating_scale_min": SCALE[0],
              "rating_scale_max": SCALE[1], "rating_aspects": list(ASPECTS)}
    project = services.project_create(
        created_by=None, slug="machine", name="Machine", criterion="helpfulness",
        completions_per_prompt=K, labelers_per_prompt=N, allow_ties=True, lease_minutes=30,
        adaptive_overlap=True, adaptive_min_agreement=0.6, adaptive_max_labelers=MAX_LABELERS,
        gold_rate=0.0, **(rating if request.param == "rate" else {}))
    labelers = {}
    for name in NAMES:
        labelers[name] = make_user(name)
        services.membership_set(project=project, user=labelers[name], role="labeler")
    completion_ids = {}
    for index in range(PROMPTS):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}", external_id=f"q{index}")
        completion_ids[prompt.id] = [
            prompt.completions.create(position=position, text=f"A{index}.{position}").id
            for position in range(K)]
    var_dirs = (tmp_path / f"example-{i}" for i in count())
    return project, labelers, completion_ids, var_dirs


def test_labeling_keeps_its_invariants_under_any_sequence_of_steps(labeling_world):
    project, labelers, completion_ids, var_dirs = labeling_world
    LabelingMachine.project, LabelingMachine.labelers = project, labelers
    LabelingMachine.prompt_ids = sorted(completion_ids)
    LabelingMachine.completion_ids = completion_ids
    LabelingMachine.var_dirs = var_dirs
    run_state_machine_as_test(LabelingMachine, settings=settings(
        max_examples=30, stateful_step_count=30, deadline=None, derandomize=True,
        database=None, suppress_health_check=list(HealthCheck)))
