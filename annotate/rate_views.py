"""The labeler's rating page, for a project in rate mode: the ranking page's twin (views.rank_page
hands over to it). Apart from views.py to keep each module short."""

from django.shortcuts import render

from . import selectors
from .labeling_pages import KEYS, page_data
from .ranking import FLAG_NAMES
from .ratings import aspects_of


def rate_page(request, project, prompt_id: int):
    page = selectors.rank_page_get(project, request.user, prompt_id)
    aspects = aspects_of(project.rating_aspects)
    ranking = page.ranking
    rate_data = {
        **page_data(request, project, page.prompt, draft="rating-draft", submit="rankings"),
        "scaleMin": project.rating_scale_min,
        "scaleMax": project.rating_scale_max,
        "aspects": aspects,
        "completions": [{"id": c.id, "key": KEYS[i]} for i, c in enumerate(page.completions)],
        "displayedOrder": [c.id for c in page.completions],
        "initialScores": ranking.scores if ranking else None,
        "initialFlags": ranking.flags if ranking else {},
        "initialComment": ranking.comment if ranking else "",
        "revision": ranking.revision if ranking else 0,
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
