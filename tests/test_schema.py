"""The OpenAPI schema as generated clients read it (issue 18, item 6): JSON bodies (multipart
only for the file upload), every error answer documented, the JSON fields typed."""

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def test_request_bodies_are_json_and_only_the_import_is_multipart(schema):
    bodies = {label: sorted(op["requestBody"]["content"]) for label, op in operations(schema)
              if "requestBody" in op}
    assert bodies.pop("POST /api/projects/{project_id}/imports/") == ["multipart/form-data"]
    assert bodies and all(types == ["application/json"] for types in bodies.values()), bodies


def test_every_operation_documents_the_errors_it_can_answer(schema):
    public = {"POST /api/auth/token/"}
    for label, operation in operations(schema):
        codes = set(operation["responses"])
        path = label.split(" ", 1)[1]
        if label not in public:
            assert {"401", "403"} <= codes, label
        if "{" in path:
            assert "404" in codes, label
        if "requestBody" in operation:
            assert {"400", "415"} <= codes, label
        for code in codes - {"200", "201", "202", "204"}:
            assert operation["responses"][code]["content"]["application/json"], (label, code)
    responses = dict(operations(schema))
    assert "409" in responses["POST /api/projects/{project_id}/rankings/"]["responses"]
    assert "429" in responses["POST /api/projects/{project_id}/exports/"]["responses"]
    assert "429" in responses["POST /api/training-jobs/"]["responses"]
    unavailable = responses["POST /api/models/{artifact_id}/score/"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]


def test_tiers_flags_messages_and_score_items_are_typed(schema):
    ranking = component(schema, "RankingInputRequest")["properties"]
    assert ranking["tiers"]["items"]["items"] == {"type": "integer"}
    flag_names = ranking["flags"]["additionalProperties"]["items"]["enum"]
    assert set(flag_names) == {"unsafe", "factually_wrong", "off_topic"}
    output = component(schema, "RankingOutput")["properties"]
    assert output["tiers"]["items"]["items"] == {"type": "integer"}
    assert output["flags"]["additionalProperties"] == ranking["flags"]["additionalProperties"]
    messages = component(schema, "PromptOutput")["properties"]["messages"]
    assert messages["items"]["required"] == ["role", "content"] and messages["nullable"]
    item = component(schema, "ScoreItemRequest")["properties"]
    for side in ("prompt", "response"):
        text, chat = item[side]["oneOf"]
        assert text["type"] == "string" and chat["items"]["required"] == ["role", "content"]
