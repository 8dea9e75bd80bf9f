"""Check, before a job is queued, that a model can do what the job asks of it.

model_problem(name_or_path, role) loads the model's config and tokenizer (no weights) and
returns None when the model fits the role, or one line saying why it does not:
- "policy": a causal language model (it generates);
- "reward": a one-output sequence classifier, or a base that gets a score head.
Plain Python on transformers, no Django. The web process asks in a child process
(`python -m training.ml.inspect NAME_OR_PATH` prints the facts as JSON), once per model folder
(the answer is cached by the folder's config time): loading transformers would otherwise put
torch into every web worker that served one training request (+350 MB each).
"""

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .data import choose_rendering

ROLES = ("policy", "reward")
GENERATING = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass(frozen=True)
class ModelFacts:
    """What a model folder says of itself, read from its config and tokenizer files."""

    model_type: str
    architectures: tuple[str, ...]
    max_positions: int | None  # None: the config does not say
    chat_template: bool
    parameters: int | None  # from the weight files' header, when they are safetensors
    rendering: str = "text"  # what a reward model's "auto" input rendering means for it
    # Why it cannot take each role (None: it can), worked out where transformers is loaded.
    problems: dict = field(default_factory=dict, compare=False)


def model_facts(name_or_path: str) -> ModelFacts:
    """Load the config and the tokenizer (not the weights); raise if either fails."""
    from transformers import AutoConfig, AutoTokenizer

    local = Path(name_or_path).is_dir()
    config = AutoConfig.from_pretrained(name_or_path, local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
    positions = next((getattr(config, name) for name in
                      ("max_position_embeddings", "n_positions", "max_seq_len")
                      if isinstance(getattr(config, name, None), int)), None)
    facts = ModelFacts(
        model_type=config.model_type, architectures=tuple(config.architectures or ()),
        max_positions=positions, chat_template=bool(getattr(tokenizer, "chat_template", None)),
        parameters=_parameter_count(Path(name_or_path)) if local else None,
        rendering=choose_rendering(tokenizer))
    return replace(facts, problems={role: role_problem(facts, role) for role in ROLES})


def facts_from_json(text: str) -> ModelFacts:
    values = json.loads(text)
    return ModelFacts(**{**values, "architectures": tuple(values["architectures"])})


def main(argv: list[str]) -> int:
    """Print the model's facts as one JSON line; exit 1 with the error's type if it does not
    load (its message may hold server paths)."""
    try:
        facts = model_facts(argv[0])
    except Exception as exc:  # noqa: BLE001 - any loading failure is an answer
        print(json.dumps({"error": type(exc).__name__}))
        return 1
    print(json.dumps(asdict(facts)))
    return 0


def role_problem(facts: ModelFacts, role: str) -> str | None:
    """Why a model with these facts cannot take the role; None when it can.

    >>> facts = ModelFacts("bert", ("BertModel",), 512, False, None, "pair")
    >>> role_problem(facts, "reward") is None
    True
    >>> role_problem(facts, "policy")
    'it is not a causal language model (BertModel)'
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    names = ", ".join(facts.architectures) or facts.model_type
    if role == "policy":
        if facts.architectures:
            fits = any(a.endswith(GENERATING) for a in facts.architectures)
        else:
            fits = facts.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        return None if fits else f"it is not a causal language model ({names})"
    if role == "reward":
        if any(a.endswith("ForSequenceClassification") for a in facts.architectures):
            return None
        if facts.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
            return None  # a base model: training adds a one-output score head
        return f"it cannot be given a score head ({names})"
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def model_problem(name_or_path: str, role: str) -> str | None:
    """None when the model loads and fits the role, else one line saying why not."""
    try:
        facts = model_facts(name_or_path)
    except Exception as exc:  # noqa: BLE001 - any loading failure is an answer, not a crash
        return f"its config or tokenizer does not load ({type(exc).__name__})"
    return role_problem(facts, role)


def _parameter_count(folder: Path) -> int | None:
    """Parameters in the folder's safetensors files, read from their headers only."""
    import json
    import struct

    total, found = 0, False
    for path in folder.glob("*.safetensors"):
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 100_000_000:
                return None
            header = json.loads(handle.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                total += count
                found = True
    return total if found else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
