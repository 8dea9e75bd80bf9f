"""Names, prompts, completions, comments and logs are hostile: every page shows them as text.

The browser tests prove that nothing executes on the ranking page; these check, page by page
on the server, that the raw markup never reaches the HTML and that the strict headers are on
every page an admin can open.
"""

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from annotate import services
from annotate.models import Export, Membership, Prompt
from annotate.rendering import markdown_to_safe_html
from training.models import ModelArtifact, TrainingJob

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def hostile(field: str) -> str:
    return f"{field} {HOSTILE}"


@pytest.fixture
def hostile_world(make_user):
    """A project where every text a user or a dataset controls carries markup."""
    admin = make_user("ada" + "<b>", is_staff=True)
    project = services.project_create(
        created_by=admin, slug="hostile", name=hostile("name"), criterion=hostile("criterion"),
        instructions=hostile("instructions"), completions_per_prompt=2, labelers_per_prompt=2)
    labeler = make_user("lee<script>")
    services.membership_set(project=project, user=labeler, role=Membership.Role.LABELER)
    record = {"id": "x1", "prompt": hostile("prompt"),
              "completions": [hostile("completion-a"), hostile("completion-b")],
              "model": hostile("model")}
    services.prompts_import(project=project, binary=io.BytesIO(json.dumps(record).encode()),
                            filename=hostile("file") + ".jsonl", imported_by=admin)
    lease = services.assignment_next(project=project, labeler=labeler)
    completion_ids = list(Prompt.objects.get(id=lease.prompt_id)
                          .completions.values_list("id", flat=True))
    services.ranking_submit(project=project, labeler=labeler, prompt_id=lease.prompt_id,
                            tiers=[[completion_ids[0]], [completion_ids[1]]],
                            idempotency_key="k1", comment=hostile("comment"))
    export = Export.objects.create(project=project, version=1, params={}, status="failed",
                                   error=hostile("export-error"))
    job = TrainingJob.objects.create(
        project=project, kind="reward", params={"method": "kway"}, base_model=hostile("base"),
        dedupe_key="x", status="failed", error=hostile("job-error"), log_tail=hostile("log"),
        export=export)
    artifact = ModelArtifact.objects.create(
        project=project, name=hostile("artifact"), version=1, kind="reward",
        base_model=hostile("artifact-base"), path="nowhere", job=job)
    return {"admin": admin, "labeler": labeler, "project": project, "prompt": lease.prompt_id,
            "job": job, "artifact": artifact}


def pages_of(world) -> dict[str, str]:
    slug = world["project"].slug
    return {
        "home": "/",
        "project": f"/projects/{slug}/",
        "dashboard": f"/projects/{slug}/dashboard/",
        "training": f"/projects/{slug}/training/",
        "rounds": f"/projects/{slug}/rounds/",
        "job": f"/training/jobs/{world['job'].id}/",
        "model": f"/training/models/{world['artifact'].id}/",
        "my rankings": f"/projects/{slug}/my-rankings/",
        "labeler": f"/projects/{slug}/dashboard/labelers/{quote(world['labeler'].username)}/",
        "rank": f"/projects/{slug}/rank/{world['prompt']}/",
        "settings": f"/projects/{slug}/settings/",
        "members": f"/projects/{slug}/members/",
        "prompts": f"/projects/{slug}/prompts/",
        "prompt": f"/projects/{slug}/prompts/{world['prompt']}/",
    }


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def markup_problems(html: str) -> list[str]:
    """Tags a browser would run: inline scripts, event handlers, frames, images, js: links."""
    collector = TagCollector()
    collector.feed(html)
    problems = []
    for tag, attrs in collector.tags:
        if tag == "script" and not (attrs.get("src", "").startswith("/static/")
                                    or attrs.get("type") == "application/json"):
            problems.append(f"inline script {attrs}")
        ours = tag == "svg" and attrs.get("class") == "chart"  # charts.py, labels escaped
        if tag in ("iframe", "img", "svg", "object", "embed", "foreignobject") and not ours:
            problems.append(f"<{tag}> {attrs}")
        problems += [f"<{tag} {name}=...>" for name in attrs if name.startswith("on")]
        if re.match(r"\s*(javascript|vbscript|data):", attrs.get("href") or "", flags=re.I):
            problems.append(f"<{tag} href={attrs['href']}>")
    return problems


# What each page must show (escaped), so a page that silently dropped the text cannot pass.
SHOWN = {
    "home": ["name"],
    "project": ["name", "criterion", "instructions", "file"],
    "dashboard": ["name"],
    "training": ["name", "artifact"],
    "rounds": ["name"],
    "job": ["job-error"],  # the log: superusers only, checked below
    "model": ["artifact", "artifact-base"],
    "my rankings": ["name", "prompt", "completion-a", "completion-b"],  # plain-text previews
    "labeler": ["name", "prompt", "completion-a", "completion-b"],
    "rank": ["criterion", "instructions", "prompt", "completion-a", "completion-b"],
    "settings": ["name"],  # the form's values are attributes: escaped, checked by the parser
    "members": ["name"],
    "prompts": ["name", "prompt"],
    "prompt": ["prompt", "completion-a", "completion-b", "comment", "model"],
}

ESCAPED = "&lt;script&gt;window.__xss=1&lt;/script&gt;"


def page_responses(client, world):
    """Each page as the admin (the labeler's own pages as the labeler): (name, response)."""
    services.membership_set(project=world["project"], user=world["admin"],
                            role=Membership.Role.ADMIN)
    for name, path in pages_of(world).items():
        labeler_page = name in ("my rankings", "rank")
        client.force_login(world["labeler"] if labeler_page else world["admin"])
        yield name, client.get(path)


def test_every_page_shows_hostile_text_escaped_and_never_as_markup(client, hostile_world):
    for name, response in page_responses(client, hostile_world):
        assert response.status_code == 200, (name, response.status_code)
        html = response.content.decode()
        assert markup_problems(html) == [], name
        for field in SHOWN[name]:
            assert f"{field} {ESCAPED}" in html or f"{field} &lt;script" in html, (name, field)
    # The job's log holds the server's paths: a project admin does not see it; a superuser
    # does, escaped like the rest.
    job_page = pages_of(hostile_world)["job"]
    client.force_login(hostile_world["admin"])
    assert "log &lt;script" not in client.get(job_page).content.decode()
    superuser = hostile_world["admin"]
    superuser.is_superuser = True
    superuser.save(update_fields=["is_superuser"])
    client.force_login(superuser)
    html = client.get(job_page).content.decode()
    assert markup_problems(html) == [] and f"log {ESCAPED}" in html


def test_data_embedded_in_the_rank_page_cannot_close_its_script_tag(client, hostile_world):
    client.force_login(hostile_world["labeler"])
    html = client.get(pages_of(hostile_world)["rank"]).content.decode()
    blocks = re.findall(r'<script id="rank-data" type="application/json">(.*?)</script>', html,
                        flags=re.S)
    assert len(blocks) == 1
    assert "<" not in blocks[0] and "\\u003Cscript\\u003E" in blocks[0]
    data = json.loads(blocks[0])
    assert data["initialComment"] == hostile("comment")  # the text survives, as data


def test_every_admin_page_carries_the_strict_headers(client, hostile_world):
    for name, response in page_responses(client, hostile_world):
        policy = response["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, name
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, name
        assert response["X-Content-Type-Options"] == "nosniff", name
        assert response["Referrer-Policy"] == "same-origin", name


@pytest.mark.parametrize("markdown", [
    "![pixel](https://evil.example/p.png)",
    "![pixel][ref]\n\n[ref]: https://evil.example/p.png",
    '<img src="https://evil.example/p.png">',
    "[x](javascript:alert(1)) [y](  JAVASCRIPT:alert(1)) [z](data:text/html,<b>)",
    "[x](vbscript:msgbox(1))",
])
def test_markdown_never_yields_remote_images_or_script_links(markdown):
    html = str(markdown_to_safe_html(markdown))
    assert "<img" not in html
    assert not re.search(r'href="\s*(javascript|vbscript|data):', html, flags=re.I)


def test_templates_never_mark_data_safe():
    """Data goes into pages escaped or with json_script; `|safe` appears nowhere."""
    templates = list((ROOT / "templates").rglob("*.html"))
    assert templates
    for template in templates:
        text = template.read_text()
        assert "|safe" not in text and "{% autoescape off" not in text, template
    # mark_safe only on output that was escaped or sanitized first, in these audited places.
    uses = sorted(str(path.relative_to(ROOT)) for folder in ("annotate", "training", "config")
                  for path in (ROOT / folder).rglob("*.py") if "mark_safe(" in path.read_text())
    assert uses == ["annotate/rendering.py", "annotate/views.py", "training/views.py"]
