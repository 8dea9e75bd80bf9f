"""Job kinds: one declaration each (training.kinds.base.JobKind), registered here.

Adding a kind is one module that declares it and one line below.
"""

from config.errors import Invalid

from . import dpo, generate, policy, reward, score, sft
from .base import JobKind, JobRequest

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (
    reward.KIND,
    policy.KIND,
    generate.KIND,
    score.KIND,
    sft.KIND,
    dpo.KIND,
)}


def kind_named(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise Invalid(f"kind: must be one of {', '.join(KINDS)}") from None


__all__ = ["KINDS", "JobKind", "JobRequest", "kind_named"]
