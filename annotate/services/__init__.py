"""Writes: every change to labeling data goes through a function here, named <entity>_<action>.

Views, API endpoints, commands and tasks call `services.<function>`; the modules below group
them by subject.
"""

from .demonstrations import DemonstrationVersion, demonstration_submit
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
from .invitations import InvitationRefused, invitation_accept, invitation_user
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
from .members import (
    MemberAdded,
    member_add,
    member_invitation_create,
    member_password_set,
    member_remove,
    member_role_set,
    password_refusal,
    password_refusals,
)
from .projects import (
    FIXED_ONCE_PROMPTS,
    FIXED_ONCE_RANKINGS,
    fixed_settings,
    membership_set,
    project_create,
    project_update,
)
from .prompts import prompt_gold_mark, prompt_restore, prompt_retire

__all__ = [
    "DemonstrationVersion",
    "demonstration_submit",
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
    "FIXED_ONCE_PROMPTS",
    "FIXED_ONCE_RANKINGS",
    "fixed_settings",
    "InvitationRefused",
    "MemberAdded",
    "invitation_accept",
    "invitation_user",
    "member_add",
    "member_invitation_create",
    "member_password_set",
    "member_remove",
    "member_role_set",
    "password_refusal",
    "password_refusals",
    "project_update",
    "lease_renew",
    "membership_set",
    "project_create",
    "gold_done_count",
    "prompt_gold_clear",
    "prompt_gold_mark",
    "prompt_gold_set",
    "prompt_restore",
    "prompt_retire",
    "prompt_skip",
    "prompt_import_dispatch",
    "prompt_import_run",
    "prompt_imports_reap",
    "prompts_import",
    "prompts_import_upload",
    "prompts_request_more_rankings",
    "ranking_submit",
]
