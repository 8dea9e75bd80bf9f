"""What every labeling page (rank, rate, demonstrate) hands its script: the project and prompt,
the keys, where to send answers, skips and lease renewals, and where its draft is kept."""

from django.urls import reverse

KEYS = "123456789"


def page_data(request, project, prompt, *, draft: str, submit: str) -> dict:
    """The page data the three labeling pages share. `draft` names the kind of draft (each
    kind its own localStorage key, so one never loads into another); `submit` is the
    API route answers go to, also the name under which its URL is given."""
    return {
        "projectId": project.id,
        "promptId": prompt.id,
        "frozen": project.is_frozen,
        "draftKey": f"rlhf-studio:{draft}:{request.user.id}:{prompt.id}",
        "layoutKey": f"rlhf-studio:layout:{request.user.id}",
        "leaseMinutes": project.lease_minutes,
        "urls": {
            submit: reverse(f"api_{submit}", args=[project.id]),
            "skips": reverse("api_skips", args=[project.id]),
            "lease": reverse("api_lease_renew", args=[project.id, prompt.id]),
            "next": reverse("rank_next", args=[project.slug]),
        },
    }
