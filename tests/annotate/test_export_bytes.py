"""An export's bytes are a contract (its content hash): the streamed, pre-encoded writer must
write exactly what a straightforward writer does, whatever the chunking of the reads."""

import io
import json
import random
from pathlib import Path

import pytest

from annotate import exporters, services
from annotate.consensus import (
    LabeledRanking,
    consensus_rankings,
    merge_prompt,
    merge_votes,
    ranked_pairs,
    tally_pairs,
)
from annotate.content import prompt_key
from annotate.exporters import (
    DATA_FILES,
    ExportWriter,
    PromptForExport,
    RankingForExport,
    consensus_row,
    is_test_prompt,
    preference_row,
    ranking_row,
)
from annotate.models import Export, Project, Prompt, Ranking
from annotate.services.exports import labeler_pseudonym, prompts_with_rankings
from tests.factories import hh_record, jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

AWKWARD = ['Say "hi" \\ back', "naïve café 中文 😀", "line\nbreak\ttab\x01\u2028end", "",
           "</script>"]


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def reference_dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def reference_files(project: Project, params: services.ExportParams, directory: Path) -> None:
    """The data files as the export wrote them before issue 19: rows read through the ORM
    (Django's converters), prompt by prompt; merge_votes and consensus_rankings apart; one
    json.dumps per row."""
    sources = ["labeler", "imported"] if params.include_imported else ["labeler"]
    conversational = project.prompts.filter(messages__isnull=False).exists()
    lines: dict[str, list[str]] = {name: [] for name in DATA_FILES}
    for prompt in Prompt.objects.filter(project=project, retired_at__isnull=True).order_by("id"):
        texts = dict(prompt.completions.order_by("position").values_list("id", "text"))
        exported = PromptForExport(prompt.id, prompt.external_id, prompt.text, prompt.messages,
                                   texts)
        rankings = [
            RankingForExport(r.labeler_id, labeler_pseudonym(project.id, r.labeler_id), r.source,
                             r.tiers, r.revision, r.flags, r.time_spent_ms, r.displayed_order,
                             r.scores)
            for r in prompt.rankings.filter(source__in=sources).order_by("source", "labeler_id")]
        labeled = [LabeledRanking(prompt.id, r.labeler, r.tiers) for r in rankings]
        verdicts = merge_votes(labeled, min_votes=params.min_votes,
                               min_agreement=params.min_agreement, tie_policy=params.tie_policy)
        consensus = consensus_rankings(labeled, params.tie_policy)
        lines["rankings.jsonl"] += [reference_dumps(ranking_row(exported, r)) for r in rankings]
        if consensus:
            lines["consensus.jsonl"].append(
                reference_dumps(consensus_row(exported, consensus[0], conversational)))
        if verdicts:
            key = prompt_key(prompt.text, prompt.messages)
            split = "test" if is_test_prompt(key, params.test_fraction, params.seed) else "train"
            lines[f"{split}.jsonl"] += [
                reference_dumps(preference_row(exported, v, conversational)) for v in verdicts]
    directory.mkdir(parents=True)
    for name, written in lines.items():
        (directory / name).write_text("".join(written), encoding="utf-8")


def assert_export_matches_reference(export: Export, project: Project, tmp_path: Path) -> None:
    params = services.ExportParams(**{**export.params, "formats": tuple(export.params["formats"])})
    reference = tmp_path / "reference"
    reference_files(project, params, reference)
    folder = services.export_file_path(export, None).with_suffix("")
    for name in DATA_FILES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
    assert export.content_hash == exporters.content_hash(reference)
    manifest = json.loads((folder / exporters.MANIFEST).read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    for name in DATA_FILES:  # hashed as written: the same as read back from the reference
        sha256, size, lines = exporters._digest(reference / name)
        assert listed[name] == {"path": name, "bytes": size, "sha256": sha256, "records": lines}


def build(project, **params) -> Export:
    params.setdefault("formats", ("trl-jsonl",))
    return services.export_create(project=project, params=services.ExportParams(**params),
                                  created_by=None, run_now=True)


def rank(prompt: Prompt, labeler, tiers_by_position, **fields) -> None:
    ids = list(prompt.completions.order_by("position").values_list("id", flat=True))
    Ranking.objects.create(prompt=prompt, labeler=labeler, displayed_order=ids,
                           tiers=[[ids[p] for p in tier] for tier in tiers_by_position], **fields)


@pytest.fixture
def awkward_project(project, make_user):
    """Prompts and completions with quotes, backslashes, non-ASCII, control characters and
    empty text; rankings with ties, flags and times; a retired prompt; 3 labelers."""
    records = [prompt_record(i, prompt=f"{AWKWARD[i % 5]} #{i}",
                             completions=[f"{AWKWARD[(i + j) % 5]}{j}" for j in range(4)])
               for i in range(9)]
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes(records)))
    labelers = [make_user(name) for name in ("ann", "ben", "cat")]
    rng = random.Random(5)
    for prompt in project.prompts.order_by("id"):
        for labeler in labelers:
            order = rng.sample(range(4), 4)
            tiers = [[order[0], order[1]], [order[2]], [order[3]]] if rng.random() < 0.4 else \
                [[p] for p in order]
            rank(prompt, labeler, tiers, flags={"x": ["off-topic"]} if rng.random() < 0.3 else {},
                 time_spent_ms=rng.choice([None, 1234]), revision=rng.choice([1, 2]))
    services.prompt_retire(project=project, prompt_id=project.prompts.order_by("id")[4].id)
    return project


@pytest.mark.parametrize("params", [
    {"min_votes": 2, "min_agreement": 0.66, "test_fraction": 0.3, "seed": 2},
    {"min_votes": 1, "min_agreement": 0.5, "tie_policy": "abstain", "test_fraction": 0.5},
])
def test_the_export_writes_the_reference_writers_bytes(awkward_project, tmp_path, params):
    export = build(awkward_project, **params)
    assert export.status == "succeeded" and export.counts["prompts"] == 8
    assert export.counts["pairs"]["train"] + export.counts["pairs"]["test"] > 0
    assert_export_matches_reference(export, awkward_project, tmp_path)


def test_chat_prompts_and_imported_rankings_match_the_reference(other_project, tmp_path):
    services.prompts_import(project=other_project, filename="hh.jsonl", binary=io.BytesIO(
        jsonl_bytes([hh_record("Q? é \"x\"", "good 😀", "bad\n", history=("Hi", "Hello")),
                     hh_record("Other?", "yes", "no")])))
    export = build(other_project, min_votes=1, min_agreement=0.5, include_imported=True,
                   test_fraction=0.0)
    assert export.counts["pairs"]["train"] == 2
    assert_export_matches_reference(export, other_project, tmp_path)


def test_rankings_split_across_fetch_chunks_are_merged_per_prompt(awkward_project, tmp_path,
                                                                  monkeypatch):
    """Reads in chunks of 2 rows: every prompt's 3 rankings and 4 completions straddle a
    chunk boundary, and the export is the same as with the default chunk."""
    whole = build(awkward_project, min_votes=2, min_agreement=0.66)
    monkeypatch.setattr("annotate.services.exports.STREAM_CHUNK", 2)
    params = services.ExportParams(min_votes=2, min_agreement=0.66)
    streamed = list(prompts_with_rankings(awkward_project, params))
    expected = {p.id: set(p.rankings.values_list("labeler_id", flat=True))
                for p in awkward_project.prompts.filter(retired_at__isnull=True)}
    assert {prompt.prompt_id: {r.labeler_id for r in rankings}
            for prompt, rankings in streamed} == expected
    assert all(len(prompt.completions) == 4 and len(rankings) == 3
               for prompt, rankings in streamed)
    chunked = build(awkward_project, min_votes=2, min_agreement=0.66)
    assert chunked.content_hash == whole.content_hash
    assert_export_matches_reference(chunked, awkward_project, tmp_path)


def test_streamed_rows_decode_json_as_the_orm_does(awkward_project):
    """Flags, tiers, displayed order and (rate mode) scores: the same values as the ORM's."""
    Ranking.objects.filter(prompt__project=awkward_project).update(
        scores={"1": {"overall": 3}})
    params = services.ExportParams(min_votes=1)
    for prompt, rankings in prompts_with_rankings(awkward_project, params):
        stored = {r.labeler_id: r for r in Ranking.objects.filter(prompt_id=prompt.prompt_id)}
        for ranking in rankings:
            orm = stored[ranking.labeler_id]
            assert (ranking.tiers, ranking.flags, ranking.displayed_order, ranking.scores) == (
                orm.tiers, orm.flags, orm.displayed_order, orm.scores)
        assert prompt.messages == Prompt.objects.get(id=prompt.prompt_id).messages


def random_rankings(rng: random.Random, prompt_id: int) -> list[LabeledRanking]:
    """1 to 5 labelers ranking 2 to 5 completions (some of them), ties and weights."""
    ids = list(range(10, 10 + rng.randint(2, 5)))
    found = []
    for labeler in rng.sample("abcdef", rng.randint(1, 5)):
        order = rng.sample(ids, rng.randint(2, len(ids)))
        cut = rng.randint(1, len(order))
        tiers = [[c] for c in order] if cut == len(order) else [order[:cut], order[cut:]]
        found.append(LabeledRanking(prompt_id, labeler, tiers, rng.choice([1.0, 0.5, 2 / 3])))
    return found


def test_merge_prompt_is_merge_votes_and_consensus_rankings_from_one_tally():
    rng = random.Random(11)
    for case in range(300):
        rankings = random_rankings(rng, prompt_id=case)
        for tie_policy in ("half", "abstain"):
            kwargs = {"min_votes": rng.randint(1, 3), "min_agreement": rng.choice([0.5, 0.66]),
                      "tie_policy": tie_policy}
            verdicts, consensus = merge_prompt(rankings, **kwargs)
            assert verdicts == merge_votes(rankings, **kwargs)
            assert [consensus] == consensus_rankings(rankings, tie_policy)
    assert merge_prompt([]) == ([], None)
    with pytest.raises(ValueError, match="one prompt"):
        merge_prompt([LabeledRanking(1, "a", [[1], [2]]), LabeledRanking(2, "a", [[1], [2]])])


def test_the_writer_matches_json_dumps_for_awkward_values(tmp_path):
    """Pure: numbers json writes specially (floats, big ints, None), tuples, scores and every
    awkward string, in all three kinds of line."""
    prompt = PromptForExport(7, AWKWARD[0], AWKWARD[1], None,
                             {10**20: AWKWARD[2], 3: AWKWARD[3], 4: AWKWARD[4]})
    conversational = PromptForExport(8, "", "q", [{"role": "user", "content": AWKWARD[2]}],
                                     {1: AWKWARD[1], 2: AWKWARD[0]})
    for item, ids in ((prompt, [10**20, 3, 4]), (conversational, [1, 2])):
        for chat in (False, True):
            labeled = [LabeledRanking(item.prompt_id, n, [[ids[0]], ids[1:]], w)
                       for n, w in (("a", 1.0), ("b", 1 / 3), ("c", 0.1))]
            verdicts, consensus = merge_prompt(labeled)
            writer = ExportWriter(tmp_path / f"{item.prompt_id}-{chat}", conversational=chat,
                                  test_fraction=0.0, seed=0)
            rankings = [
                RankingForExport(1, "labeler-a", "labeler", ((ids[0],), tuple(ids[1:])), 2,
                                 {"c": [AWKWARD[1]]}, None, tuple(ids)),
                RankingForExport(None, "imported", "imported", [[i] for i in ids], 1, {}, 10**6,
                                 ids, {str(ids[0]): {"overall": 2.5}, AWKWARD[2]: {}}),
                RankingForExport(2, AWKWARD[1], "labeler", [ids], 1, None, 0, ids),
            ]
            writer.add_prompt(item, rankings, verdicts, consensus)
            writer.close()
            assert (writer.directory / "rankings.jsonl").read_text() == "".join(
                reference_dumps(ranking_row(item, r)) for r in rankings)
            expected = "".join(reference_dumps(preference_row(item, v, chat)) for v in verdicts)
            assert (writer.directory / "train.jsonl").read_text() == expected
            assert (writer.directory / "consensus.jsonl").read_text() == reference_dumps(
                consensus_row(item, consensus, chat))


def reference_ranked_pairs(completion_ids, tallies) -> list[list[int]]:
    """ranked_pairs as first written: a depth-first search for a cycle before each lock."""
    def reaches(beats, start, goal):
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for nxt in beats[node] - seen:
                seen.add(nxt)
                stack.append(nxt)
        return False

    majorities = []
    for (low, high), tally in tallies.items():
        if tally.low_wins != tally.high_wins:
            win, lose = max(tally.low_wins, tally.high_wins), min(tally.low_wins, tally.high_wins)
            winner, loser = (low, high) if tally.low_wins > tally.high_wins else (high, low)
            majorities.append((-win, lose, winner, loser))
    majorities.sort()
    beats = {completion_id: set() for completion_id in completion_ids}
    for _, _, winner, loser in majorities:
        if not reaches(beats, loser, winner):
            beats[winner].add(loser)
    beaten = {completion_id: 0 for completion_id in beats}
    for losers in beats.values():
        for loser in losers:
            beaten[loser] += 1
    tiers = []
    while beaten:
        tier = sorted(c for c, count in beaten.items() if count == 0)
        tiers.append(tier)
        for c in tier:
            del beaten[c]
            for loser in beats[c]:
                beaten[loser] -= 1
    return tiers


def test_ranked_pairs_locks_the_same_majorities_as_a_search_for_cycles():
    """Random votes of 1 to 7 labelers on up to 6 completions: cycles, ties and weights."""
    rng = random.Random(23)
    shared = 0
    for case in range(2000):
        ids = list(range(rng.randint(2, 6)))
        rankings = [LabeledRanking(case, str(n), [[c] for c in rng.sample(ids, len(ids))]
                                   if rng.random() < 0.7 else [ids[:1], ids[1:]],
                                   rng.choice([1.0, 0.5, 2 / 3]))
                    for n in range(rng.randint(1, 7))]
        tallies = tally_pairs(rankings)
        expected = reference_ranked_pairs(ids, tallies)
        assert ranked_pairs(ids, tallies) == expected
        shared += any(len(tier) > 1 for tier in expected)
    assert shared  # some consensus rankings share a tier: skipped locks and ties were met
