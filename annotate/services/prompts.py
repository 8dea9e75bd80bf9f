"""A project's admins curate its prompts: retire junk (and bring it back), mark gold from the
prompt's page."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config.errors import Invalid

from ..consensus import LabeledRanking, consensus_rankings
from ..models import Assignment, Project, Prompt, Ranking
from .labeling import _locked_prompt, prompt_gold_set


def prompt_retire(*, project: Project, prompt_id: int, now: datetime | None = None,
                  ) -> tuple[Prompt, int]:
    """Retire a prompt: it keeps its rankings, but no one is handed it again and exports leave
    it out. Open leases on it end. Return the prompt and how many leases ended."""
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        if prompt.retired_at is None:
            prompt.retired_at = now or timezone.now()
            prompt.save(update_fields=["retired_at"])
        ended, _ = Assignment.objects.filter(prompt=prompt,
                                             status=Assignment.Status.LEASED).delete()
    return prompt, ended


def prompt_restore(*, project: Project, prompt_id: int) -> Prompt:
    """Undo prompt_retire: the prompt is handed out and exported again, its rankings intact."""
    with transaction.atomic():
        prompt = _locked_prompt(project, prompt_id)
        prompt.retired_at = None
        prompt.save(update_fields=["retired_at"])
    return prompt


def prompt_gold_mark(*, project: Project, prompt_id: int, reference: str) -> Prompt:
    """Mark a prompt gold as its page offers: `reference` "consensus" takes its labelers'
    consensus ranking as the reference (mode "ranking"); "best:<completion id>" makes that
    completion the one best answer (mode "best")."""
    completion_ids = list(Prompt.objects.filter(project=project, id=prompt_id)
                          .values_list("completions__id", flat=True))
    if reference == "consensus":
        tiers = _consensus_tiers(project, prompt_id)
        if tiers is None:
            raise Invalid("No labeler has ranked this prompt yet: there is no consensus to "
                          "take as the reference; choose its best completion instead.")
        return prompt_gold_set(project=project, prompt_id=prompt_id, tiers=tiers,
                               mode="ranking")
    best = reference.removeprefix("best:")
    if not best.isdigit() or int(best) not in completion_ids:
        raise Invalid("Choose the consensus or one of this prompt's completions.")
    rest = [i for i in completion_ids if i != int(best)]
    return prompt_gold_set(project=project, prompt_id=prompt_id, tiers=[[int(best)], rest],
                           mode="best")


def _consensus_tiers(project: Project, prompt_id: int) -> list[list[int]] | None:
    rows = Ranking.objects.filter(prompt_id=prompt_id, prompt__project=project,
                                  source=Ranking.Source.LABELER).values_list("labeler_id", "tiers")
    labeled = [LabeledRanking(prompt_id, str(labeler_id), tiers) for labeler_id, tiers in rows]
    merged = consensus_rankings(labeled, project.consensus_tie_policy)
    return merged[0].tiers if merged else None
