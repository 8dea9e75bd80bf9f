"""Writes: every change to labeling data goes through a function here, named <entity>_<action>.

Views, API endpoints, commands and tasks call `services.<function>`; the modules below group
them by subject.
"""

from .export_runs import export_dispatch, exports_reap
from .exports import (
    ExportParams,
    export_create,
    export_file_path,
    export_run,
    labeler_pseudonym,
)
from .import_runs import prompt_import_dispatch, prompt_imports_reap
from .imports import ImportRejected, prompt_import_run, prompts_import, prompts_import_upload
from .labeling import (
    RankingVersion,
    assignment_next,
    gold_done_count,
    lease_renew,
    prompt_gold_clear,
    prompt_gold_set,
    prompt_skip,
    prompts_request_more_rankings,
    ranking_submit,
)
from .projects import labeler_add, membership_set, project_create

__all__ = [
    "RankingVersion",
    "ExportParams",
    "export_create",
    "export_dispatch",
    "exports_reap",
    "export_file_path",
    "export_run",
    "labeler_pseudonym",
    "ImportRejected",
    "assignment_next",
    "labeler_add",
    "lease_renew",
    "membership_set",
    "project_create",
    "gold_done_count",
    "prompt_gold_clear",
    "prompt_gold_set",
    "prompt_skip",
    "prompt_import_dispatch",
    "prompt_import_run",
    "prompt_imports_reap",
    "prompts_import",
    "prompts_import_upload",
    "prompts_request_more_rankings",
    "ranking_submit",
]
