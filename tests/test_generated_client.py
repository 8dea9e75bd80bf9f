"""A client generated from the app's OpenAPI schema by openapi-python-client drives labeling
from the first prompt to the export, against a live server (issue 18, item 6).

The schema is dumped as `manage.py spectacular` dumps it, the client generated into a
temporary folder (offline) and imported. Ada, the project's admin, imports prompts (the one
multipart body) and builds an export; Lena, its labeler, ranks every prompt. Imports and
exports run on a worker: here the test runs the queued job itself, as the worker would.
"""

import importlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate import services
from annotate.models import Export, PromptImport
from tests.factories import jsonl_bytes, prompt_record

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]
PACKAGE = "rlhf_client"


def generator() -> str | None:
    """The openapi-python-client command: beside this Python's, or on the PATH."""
    beside = Path(sys.executable).parent / "openapi-python-client"
    return str(beside) if beside.exists() else shutil.which("openapi-python-client")


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    """The generated package, imported."""
    command = generator()
    if command is None:
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    folder = tmp_path_factory.mktemp("generated")
    schema = folder / "schema.json"
    call_command("spectacular", "--file", str(schema), "--format", "openapi-json",
                 "--fail-on-warn")
    config = folder / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    result = subprocess.run(
        [command, "generate", "--path", str(schema), "--output-path", str(folder / PACKAGE),
         "--meta", "none", "--config", str(config)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module(PACKAGE)
        yield package
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def generated(module: str):
    return importlib.import_module(f"{PACKAGE}.{module}")


def test_every_module_of_the_generated_client_imports(client_package):
    """A body offered as JSON, form and multipart made code that failed on import
    (NameError: name 'Unset' is not defined)."""
    import pkgutil

    names = [m.name for m in pkgutil.walk_packages(client_package.__path__, PACKAGE + ".")]
    assert len([n for n in names if ".api." in n]) >= 25
    for name in names:
        importlib.import_module(name)


@pytest.fixture
def world(make_user, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    project = services.project_create(
        created_by=None, slug="client", name="Client", criterion="helpfulness",
        completions_per_prompt=2, labelers_per_prompt=1, allow_ties=False)
    for name, role in (("ada", "admin"), ("lena", "labeler")):
        user = make_user(name)
        user.set_password(f"{name}-password")
        user.save()
        services.membership_set(project=project, user=user, role=role)
    return project


def token_client(base_url: str, username: str):
    """Log in through the generated client: POST /api/auth/token/, then a client with it."""
    from rlhf_client import AuthenticatedClient, Client
    from rlhf_client.api.auth import auth_token_create
    from rlhf_client.models import AuthTokenRequest, TokenOutput

    answer = auth_token_create.sync(client=Client(base_url=base_url), body=AuthTokenRequest(
        username=username, password=f"{username}-password"))
    assert isinstance(answer, TokenOutput), answer
    return AuthenticatedClient(base_url=base_url, token=answer.token, prefix="Token",
                               raise_on_unexpected_status=True)


def test_a_generated_client_labels_from_the_first_prompt_to_the_export(
        client_package, world, live_server):
    from rlhf_client.api.exports import exports_download_retrieve, exports_retrieve
    from rlhf_client.api.projects import (
        projects_exports_create,
        projects_imports_create,
        projects_imports_retrieve,
        projects_next_prompt_retrieve,
        projects_progress_retrieve,
        projects_rankings_create,
    )
    from rlhf_client.models import (
        ErrorOutput,
        ExportInputRequest,
        ExportOutput,
        FormatsEnum,
        ImportOutput,
        InvalidOutput,
        NextPromptOutput,
        PromptImportInputRequest,
        RankingInputRequest,
        RankingInputRequestFlags,
        RankingOutput,
        RunStatusEnum,
    )
    from rlhf_client.types import File

    project_id = world.id
    as_ada, as_lena = (token_client(live_server.url, name) for name in ("ada", "lena"))

    # Ada imports three prompts: a multipart body, the file its one field.
    upload = File(payload=io.BytesIO(jsonl_bytes([prompt_record(i, k=2) for i in range(3)])),
                  file_name="prompts.jsonl", mime_type="application/x-ndjson")
    queued = projects_imports_create.sync(project_id, client=as_ada,
                                          body=PromptImportInputRequest(file=upload))
    assert isinstance(queued, ImportOutput) and queued.status == RunStatusEnum.QUEUED
    services.prompt_import_run(queued.id)  # what the worker does
    done = projects_imports_retrieve.sync(project_id, queued.id, client=as_ada)
    assert done.status == RunStatusEnum.SUCCEEDED and done.prompt_count == 3

    # Lena ranks every prompt she is given, the second completion first, until none is left.
    ranked = []
    while True:
        answer = projects_next_prompt_retrieve.sync_detailed(project_id, client=as_lena)
        if answer.status_code == 204:
            break
        assert isinstance(answer.parsed, NextPromptOutput)
        first, second = (c.id for c in answer.parsed.completions)
        flags = RankingInputRequestFlags.from_dict({str(first): ["off_topic"]})
        saved = projects_rankings_create.sync(project_id, client=as_lena, body=RankingInputRequest(
            prompt=answer.parsed.prompt.id, tiers=[[second], [first]], flags=flags,
            idempotency_key=f"lena-{answer.parsed.prompt.id}"))
        assert isinstance(saved, RankingOutput) and saved.revision == 1
        assert saved.tiers == [[second], [first]]
        assert saved.flags.to_dict() == {str(first): ["off_topic"]}
        ranked.append(saved.prompt)
    assert len(ranked) == 3
    progress = projects_progress_retrieve.sync(project_id, client=as_lena)
    assert progress.done == 3 and progress.left == 0

    # Errors come back typed: a labeler may not export; a ranking of nothing is invalid.
    refused = projects_exports_create.sync(project_id, client=as_lena, body=ExportInputRequest())
    assert isinstance(refused, ErrorOutput) and refused.detail
    invalid = projects_rankings_create.sync(project_id, client=as_lena, body=RankingInputRequest(
        prompt=ranked[0], tiers=[[0]], idempotency_key="lena-bad"))
    assert isinstance(invalid, InvalidOutput | ErrorOutput)

    # Ada exports: queued, built on the worker, polled to success, downloaded.
    export = projects_exports_create.sync(project_id, client=as_ada, body=ExportInputRequest(
        min_votes=1, formats=[FormatsEnum.TRL_JSONL]))
    assert isinstance(export, ExportOutput) and export.status == RunStatusEnum.QUEUED
    services.export_run(export.id)  # what the worker does
    for _ in range(50):
        export = exports_retrieve.sync(export.id, client=as_ada)
        if export.status != RunStatusEnum.QUEUED and export.status != RunStatusEnum.RUNNING:
            break
    assert export.status == RunStatusEnum.SUCCEEDED, export.error
    assert export.download_url
    download = exports_download_retrieve.sync_detailed(export.id, client=as_ada)
    assert download.status_code == 200 and download.content.startswith(b"PK")
    assert Export.objects.get(id=export.id).counts and PromptImport.objects.count() == 1


def test_a_generated_client_writes_a_demonstration(client_package, world, live_server):
    """Demonstrate mode through the generated client: the written response comes back typed,
    and a demonstrate project refuses a ranking with a typed error."""
    from rlhf_client.api.projects import (
        projects_demonstrations_create,
        projects_next_prompt_retrieve,
        projects_rankings_create,
    )
    from rlhf_client.models import (
        DemonstrationInputRequest,
        DemonstrationOutput,
        ErrorOutput,
        RankingInputRequest,
    )

    services.project_update(project=world, annotation_mode="demonstrate")
    services.prompts_import(project=world, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(0, k=2)])))
    as_lena = token_client(live_server.url, "lena")
    lease = projects_next_prompt_retrieve.sync(world.id, client=as_lena)
    source = lease.completions[1].id
    saved = projects_demonstrations_create.sync(world.id, client=as_lena,
                                                body=DemonstrationInputRequest(
        prompt=lease.prompt.id, text="  A better answer.  ", source_completion=source,
        idempotency_key="lena-write-1"))
    assert isinstance(saved, DemonstrationOutput)
    assert (saved.text, saved.source_completion, saved.revision) == ("A better answer.",
                                                                     source, 1)
    refused = projects_rankings_create.sync(world.id, client=as_lena, body=RankingInputRequest(
        prompt=lease.prompt.id, tiers=[[source]], idempotency_key="lena-rank"))
    assert isinstance(refused, ErrorOutput) and "demonstrate mode" in refused.detail
