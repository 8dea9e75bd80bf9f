"""The labeler's rating page, for a project in rate mode: the ranking page's twin (views.rank_page
hands over to it). Apart from views.py to keep each module short."""

from django.shortcuts import render
from django.urls import reverse

from . import selectors
from .ranking import FLAG_NAMES
from .ratings import aspects_of

KEYS = "123456789"


def rate_page(request, project, prompt_id: int):
    page = selectors.rank_page_get(project, request.user, prompt_id)
    aspects = aspects_of(project.rating_aspects)
    ranking = page.ranking
    rate_data = {
        "projectId": project.id,
        "promptId": page.prompt.id,
        "frozen": project.is_frozen,
        "scaleMin": project.rating_scale_min,
        "scaleMax": project.rating_scale_max,
        "aspects": aspects,
        "completions": [{"id": c.id, "key": KEYS[i]} for i, c in enumerate(page.completions)],
        "displayedOrder": [c.id for c in page.completions],
        "initialScores": ranking.scores if ranking else None,
        "initialFlags": ranking.flags if ranking else {},
        "initialComment": ranking.comment if ranking else "",
        "revision": ranking.revision if ranking else 0,
        # Not the ranking page's key: a draft of one kind never loads into the other.
        "draftKey": f"rlhf-studio:rating-draft:{request.user.id}:{page.prompt.id}",
        "layoutKey": f"rlhf-studio:layout:{request.user.id}",
        "leaseMinutes": project.lease_minutes,
        "urls": {
            "rankings": reverse("api_rankings", args=[project.id]),
            "skips": reverse("api_skips", args=[project.id]),
            "lease": reverse("api_lease_renew", args=[project.id, page.prompt.id]),
            "next": reverse("rank_next", args=[project.slug]),
        },
    }
    return render(request, "annotate/rate.html", {
        "project": project,
        "page": page,
        "keyed_completions": list(zip(KEYS, page.completions, strict=False)),
        "aspects": aspects,
        "named_aspects": bool(project.rating_aspects),
        "scale": list(range(project.rating_scale_min, project.rating_scale_max + 1)),
        "progress": selectors.labeler_progress(project, request.user),
        "rate_data": rate_data,
        "flag_names": FLAG_NAMES,
    })
