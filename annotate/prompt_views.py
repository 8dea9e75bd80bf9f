"""The prompt browser, for a project's admins: find prompts by text and state, read one with
its rankings, mark it gold, retire it. Read the request, call one selector or service, render.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from config.errors import ApplicationError

from . import prompt_browser, selectors, services

PAGE_SIZE = 25


@login_required
@require_GET
def prompt_list(request, slug: str):
    project = selectors.project_get_administered(request.user, slug=slug)
    query = request.GET.get("q", "").strip()[:prompt_browser.MAX_QUERY]
    state = request.GET.get("state", "all")
    if state not in prompt_browser.PROMPT_STATES:
        state = "all"
    found = prompt_browser.prompts_browse(project, query=query, state=state)
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "annotate/prompts.html", {
        "project": project, "query": query, "state": state,
        "states": prompt_browser.PROMPT_STATES.items(), "page": page,
        "rows": prompt_browser.prompt_rows(project, list(page.object_list)),
        "filters": urlencode({"q": query, "state": state}),
    })


@login_required
@require_GET
def prompt_detail(request, slug: str, prompt_id: int):
    project = selectors.project_get_administered(request.user, slug=slug)
    prompt = prompt_browser.prompt_get(project, prompt_id)
    return render(request, "annotate/prompt.html", {
        "project": project, "review": prompt_browser.prompt_review(project, prompt),
        "back": _back(request),
    })


@login_required
@require_POST
def prompt_gold(request, slug: str, prompt_id: int):
    """Mark the prompt gold (`reference`: "consensus" or "best:<completion id>") or, with
    `action` "clear", make it an ordinary prompt again."""
    project = selectors.project_get_administered(request.user, slug=slug)
    prompt = prompt_browser.prompt_get(project, prompt_id)
    try:
        if request.POST.get("action") == "clear":
            services.prompt_gold_clear(project=project, prompt_id=prompt.id)
            messages.success(request, "This prompt is no longer gold.")
        else:
            services.prompt_gold_mark(project=project, prompt_id=prompt.id,
                                      reference=request.POST.get("reference", ""))
            messages.success(request, "This prompt is gold now.")
    except ApplicationError as refused:
        messages.error(request, str(refused))
    return _to_prompt(request, project, prompt)


@login_required
@require_POST
def prompt_retire(request, slug: str, prompt_id: int):
    """Retire the prompt, or with `action` "restore" bring it back."""
    project = selectors.project_get_administered(request.user, slug=slug)
    prompt = prompt_browser.prompt_get(project, prompt_id)
    if request.POST.get("action") == "restore":
        services.prompt_restore(project=project, prompt_id=prompt.id)
        messages.success(request, "Prompt restored: it is handed out and exported again.")
    else:
        _, ended = services.prompt_retire(project=project, prompt_id=prompt.id)
        held = f" {ended} open lease{'s' if ended != 1 else ''} on it ended." if ended else ""
        messages.success(request, "Prompt retired: its rankings stay, but no one is handed "
                                  f"it and exports leave it out.{held}")
    return _to_prompt(request, project, prompt)


def _back(request) -> str:
    """The browser's query string the prompt page was opened from, to link back to it."""
    return _back_of(request.GET.get("back", ""))


def _to_prompt(request, project, prompt):
    url = reverse("prompt_detail", args=[project.slug, prompt.id])
    back = _back_of(request.POST.get("back", ""))
    return redirect(f"{url}?{urlencode({'back': back})}" if back else url)


def _back_of(back: str) -> str:
    return back if back.startswith(("q=", "state=")) else ""
