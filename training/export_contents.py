"""Which exports a job kind can train on. Pure: no Django.

An export holds some of three kinds of data, told by the counts its build recorded: a rank
or rate project's export holds preference pairs, a rate project's also its completions'
scores (scores.jsonl), a demonstrate project's the labelers' demonstrations as SFT
examples. A job kind declares what it reads (JobKind.reads, JobKind.export_reads: any one of
them will do); a request for an export holding none of it is refused before a job is queued,
saying what the export holds and what the job needs.
"""

from collections.abc import Iterable, Mapping

PAIRS, SCORES, DEMONSTRATIONS = "pairs", "scores", "demonstrations"
WHAT = {
    PAIRS: "preference pairs",
    SCORES: "rated completions' scores (scores.jsonl)",
    DEMONSTRATIONS: "demonstrations (SFT examples, no pairs)",
}


def export_holds(counts: Mapping) -> frozenset[str]:
    """What an export holds, from its recorded counts.

    >>> sorted(export_holds({"pairs": {"train": 4, "test": 1}, "scores": {"train": 6}}))
    ['pairs', 'scores']
    >>> sorted(export_holds({"demonstrations": 3, "examples": {"train": 3, "test": 0}}))
    ['demonstrations']
    """
    if DEMONSTRATIONS in counts:
        return frozenset({DEMONSTRATIONS})
    return frozenset(name for name in (PAIRS, SCORES) if name in counts)


def holds_text(holds: Iterable[str]) -> str:
    """Say what an export holds.

    >>> holds_text({"scores", "pairs"})
    "preference pairs and rated completions' scores (scores.jsonl)"
    """
    named = [WHAT[name] for name in WHAT if name in holds]
    return " and ".join(named) if named else "no data a job reads"


def export_refusal(*, version: int, counts: Mapping, reads: Iterable[str],
                   job: str) -> str | None:
    """Why the export cannot feed the job (a message for the `export` field), or None.

    >>> print(export_refusal(version=3, counts={"demonstrations": 2}, reads=["pairs"],
    ...                      job="DPO"))  # doctest: +NORMALIZE_WHITESPACE
    export: v3 holds demonstrations (SFT examples, no pairs); a DPO job needs preference pairs
    (an export of a rank or rate project)
    >>> export_refusal(version=3, counts={"pairs": {}}, reads=["pairs"], job="DPO") is None
    True
    """
    reads = list(reads)
    holds = export_holds(counts)
    if not reads or holds & set(reads):
        return None
    return (f"export: v{version} holds {holds_text(holds)}; a {job} job needs "
            f"{' or '.join(WHAT[name] for name in reads)} ({_where(reads)})")


def _where(reads: list[str]) -> str:
    sources = {PAIRS: "a rank or rate project", SCORES: "a rate project",
               DEMONSTRATIONS: "a demonstrate project"}
    return "an export of " + " or ".join(dict.fromkeys(sources[name] for name in reads))
