"""Export downloads are files to save, never pages of the app, and never files outside the export.

Carol administers "helpful" and exports it in every format. Whatever a file holds (labelers'
text is hostile), the browser is told to save it: Content-Disposition: attachment, a
content type that is not HTML, and nosniff so it is not guessed into HTML. A ?file= is one
of the export's own files by name; a path, however spelled, is a 404.
"""

import io
import re
import zipfile

import pytest
from django.test import Client

from annotate import services
from annotate.models import Export
from tests.factories import jsonl_bytes, prompt_record, rank_at_random

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>'
CONTENT_TYPES = {
    None: "application/zip",
    "train.jsonl": "application/x-ndjson",
    "test.jsonl": "application/x-ndjson",
    "rankings.jsonl": "application/x-ndjson",
    "consensus.jsonl": "application/x-ndjson",
    "README.md": "text/markdown; charset=utf-8",
    "manifest.json": "application/json",
    "train.parquet": "application/octet-stream",
    "test.parquet": "application/octet-stream",
}


@pytest.fixture
def exported(project, make_user, settings, tmp_path) -> Export:
    """Six prompts whose text is markup, ranked by three labelers, exported as JSONL and Parquet
    (the hf-dataset folder travels only inside the zip: see test_exports)."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    records = [prompt_record(i, prompt=f"{HOSTILE} {i}",
                             completions=[f"{HOSTILE} answer {j}" for j in range(4)])
               for i in range(6)]
    services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(records)),
                            filename="p.jsonl")
    rank_at_random(project, [make_user(name) for name in ("ann", "ben", "cat")], seed=1)
    params = services.ExportParams(min_votes=1, min_agreement=0.5, test_fraction=0.3,
                                   formats=("trl-jsonl", "parquet"))
    return services.export_create(project=project, params=params, created_by=None,
                                  run_now=True)


def carols_browser(carol) -> Client:
    client = Client()
    client.force_login(carol)
    return client


def assert_a_download(response, expected_name: str, content_type: str) -> bytes:
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert disposition == f'attachment; filename="{expected_name}"'
    assert response["Content-Type"] == content_type
    assert "html" not in response["Content-Type"]
    assert response["X-Content-Type-Options"] == "nosniff"
    return b"".join(response.streaming_content)


def test_every_file_of_an_export_downloads_as_an_attachment(exported, carol):
    client = carols_browser(carol)
    folder = services.export_file_path(exported, None).with_suffix("")
    for name, content_type in CONTENT_TYPES.items():
        url = f"/api/exports/{exported.id}/download/" + (f"?file={name}" if name else "")
        expected_name = f"helpful-v1-{name}" if name else "helpful-v1.zip"  # not -v1-v1.zip
        body = assert_a_download(client.get(url), expected_name, content_type)
        assert body == (folder / name if name else folder.with_suffix(".zip")).read_bytes()


def test_the_download_links_on_the_project_page_are_attachments(exported, carol):
    client = carols_browser(carol)
    page = client.get("/projects/helpful/").content.decode()
    links = set(re.findall(r'href="(/api/exports/\d+/download/[^"]*)"', page))
    assert len(links) == 3  # zip, train.jsonl, card
    for link in links:
        response = client.get(link.replace("&amp;", "&"))
        assert response.status_code == 200, link
        assert response["Content-Disposition"].startswith("attachment; filename=")
        assert "html" not in response["Content-Type"]
        assert response["X-Content-Type-Options"] == "nosniff"


def test_the_hostile_text_is_in_the_files_but_never_served_as_a_page(exported, carol):
    # The data is kept as labeled (a dataset must not be altered); it is only ever a download.
    response = carols_browser(carol).get(f"/api/exports/{exported.id}/download/?file=train.jsonl")
    assert HOSTILE.encode() in b"".join(response.streaming_content)
    assert response["Content-Disposition"].startswith("attachment;")


OUTSIDE_NAMES = [
    "../../secret.txt",
    "../secret.txt",
    "..%2F..%2Fsecret.txt",  # decoded once by the server: "../../secret.txt"
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%252e%252e%252fsecret.txt",  # double-encoded: the app must not decode again
    "..\\..\\secret.txt",
    "{secret}",  # the absolute path
    "//{secret}",
    "train.jsonl/../../../secret.txt",
    "./train.jsonl",
    "hf_dataset/../../secret.txt",
    "hf_dataset/dataset_dict.json",  # inside the folder, but not a file one may ask for
    "README.md%00",
    "README.md%00.txt",
    "",
    ".",
    "v1.zip",
]


def test_a_file_parameter_that_is_not_one_of_the_exports_files_is_404(exported, carol,
                                                                      settings):
    secret = settings.VAR_DIR / "secret.txt"
    secret.write_text("TOP SECRET")
    (settings.VAR_DIR / "exports" / "secret.txt").write_text("TOP SECRET")
    (settings.VAR_DIR / "exports" / "helpful" / "secret.txt").write_text("TOP SECRET")
    client = carols_browser(carol)
    for name in OUTSIDE_NAMES:
        query = name.replace("{secret}", str(secret))
        response = client.get(f"/api/exports/{exported.id}/download/?file={query}")
        assert response.status_code == 404, name
        assert b"TOP SECRET" not in response.content, name
        assert "attachment" not in response.get("Content-Disposition", ""), name


def test_an_unfinished_export_has_no_download(project, carol, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    export = Export.objects.create(project=project, version=1, params={})
    response = carols_browser(carol).get(f"/api/exports/{export.id}/download/")
    assert response.status_code == 404
    assert "not ready" in response.json()["detail"]


def test_the_zip_holds_every_file_of_the_folder_and_nothing_else(exported, carol):
    response = carols_browser(carol).get(f"/api/exports/{exported.id}/download/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    folder = services.export_file_path(exported, None).with_suffix("")
    on_disk = {f"v1/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
    assert set(archive.namelist()) == on_disk
    assert all(not name.startswith(("/", "..")) and "/../" not in name
               for name in archive.namelist())
