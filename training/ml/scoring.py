"""Score (prompt, response) pairs with a reward model, and evaluate it on held-out pairs.

A saved reward model reads its input as it was trained (data.saved_rendering), so it gives
the same scores here as through `transformers.pipeline("text-classification", model=path,
function_to_apply="none")` on `reward_input(tokenizer, prompt, response, rendering)`, times
the scale `alpha` applied at inference. Inputs over the model's max length are truncated as
in training (see training.ml.data).

A regression reward model (method "regression") predicts tanh(output) in [-1, 1]: its folder
says so in `reward_output.json`, and the scorer applies the same transform, so its scores are
alpha * tanh(pipeline score) and every user of RewardScorer (scoring jobs, PPO, GRPO/RLOO,
iterative DPO) gets that scalar.
"""

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .data import PreferenceRow, Text, Tokens, encode, model_max_length, saved_rendering
from .loading import load_reward_model, load_tokenizer

OUTPUT_FILE = "reward_output.json"  # beside a model whose output is transformed
OUTPUT_TRANSFORMS = {"logit": lambda value: value, "tanh": math.tanh}


def save_output(directory: str | Path, method: str, output: str) -> None:
    """Record beside a model how its raw output becomes a reward (and how a pipeline gets it)."""
    recipe = {"logit": "alpha * score", "tanh": "alpha * tanh(score)"}[output]
    (Path(directory) / OUTPUT_FILE).write_text(json.dumps(
        {"method": method, "output": output,
         "pipeline": f"pipeline('text-classification', model=path, function_to_apply='none'); "
                     f"reward = {recipe}"}, indent=2) + "\n")


def saved_output(directory: str | Path) -> str:
    """The output transform a saved model was trained with: "tanh" for a regression model,
    "logit" (the raw output) otherwise."""
    path = Path(directory) / OUTPUT_FILE
    return json.loads(path.read_text())["output"] if path.is_file() else "logit"


class RewardScorer:
    """A reward model and its tokenizer, ready to score batches on one device."""

    def __init__(self, model, tokenizer, device=None, batch_size: int = 32,
                 rendering: str = "auto", max_length: int | None = None,
                 output: str = "logit"):
        import torch

        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.rendering = rendering
        self.transform = OUTPUT_TRANSFORMS[output]  # raw output -> reward (before alpha)
        limit = model_max_length(getattr(model, "config", None), tokenizer)
        self.max_length = min(x for x in (max_length, limit) if x) if max_length or limit else None

    @classmethod
    def load(cls, path: str, batch_size: int = 32) -> "RewardScorer":
        """Load a saved reward model with the rendering, max length and output transform it
        was trained with."""
        tokenizer = load_tokenizer(path)
        saved = saved_rendering(path, tokenizer)
        return cls(load_reward_model(path, tokenizer=tokenizer), tokenizer,
                   batch_size=batch_size, rendering=saved["rendering"],
                   max_length=saved.get("max_length"), output=saved_output(path))

    def encode(self, prompt: Text, response: Text) -> Tokens:
        return encode(self.tokenizer, prompt, response, self.rendering, self.max_length)

    def score_ids(self, sequences: Sequence[Tokens | list[int]]) -> list[float]:
        """Return one reward per token sequence (the model's output through its transform);
        batches are sorted by length to pad little."""
        import torch

        sequences = [s if isinstance(s, Tokens) else Tokens(list(s)) for s in sequences]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].ids))
        rewards = [0.0] * len(sequences)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                inputs = model_inputs([sequences[i] for i in chunk], self.tokenizer.pad_token_id,
                                      self.device)
                logits = self.model(**inputs).logits
                for i, value in zip(chunk, logits[:, 0].float().tolist(), strict=True):
                    rewards[i] = self.transform(value)
        return rewards

    def score(self, items: Sequence[tuple[Text, Text]], alpha: float = 1.0) -> list[float]:
        """Return alpha * reward for each (prompt, response)."""
        return self.score_and_cut(items, alpha)[0]

    def score_and_cut(self, items: Sequence[tuple[Text, Text]], alpha: float = 1.0,
                      ) -> tuple[list[float], list[bool]]:
        """Return alpha * reward for each (prompt, response), and whether each was cut to
        the max length (the response kept, the prompt cut from the left)."""
        sequences = [self.encode(prompt, response) for prompt, response in items]
        rewards = [alpha * reward for reward in self.score_ids(sequences)]
        return rewards, [sequence.truncated for sequence in sequences]


def pad(sequences: Sequence[list[int]], pad_id: int, device):
    """Right-pad to the longest; return (input_ids, attention_mask) tensors on `device`."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, :len(sequence)] = 1
    return ids.to(device), mask.to(device)


def model_inputs(sequences: Sequence[Tokens], pad_id: int, device) -> dict:
    """Right-padded `input_ids`, `attention_mask` and, for pair inputs, `token_type_ids`."""
    input_ids, attention = pad([s.ids for s in sequences], pad_id, device)
    inputs = {"input_ids": input_ids, "attention_mask": attention}
    if any(s.type_ids is not None for s in sequences):
        types, _ = pad([s.type_ids or [0] * len(s.ids) for s in sequences], 0, device)
        inputs["token_type_ids"] = types
    return inputs


def evaluate_pairs(scorer: RewardScorer, rows: Sequence[PreferenceRow],
                   max_length: int | None = None) -> dict:
    """Pair accuracy, mean reward margin, and accuracy per `subset` (RewardBench's layout).

    Each distinct completion of a prompt is scored once. Sequences longer than `max_length`
    (or the scorer's own limit) are truncated as in training, and the pairs so cut counted.
    Ties count as wrong.
    """
    limits = [x for x in (max_length, scorer.max_length) if x]
    limit = min(limits) if limits else None
    sequences: list[Tokens] = []
    index: dict[tuple[str, str], int] = {}
    pairs = []
    for row in rows:
        ends = []
        for key, text in ((row.chosen_key, row.chosen), (row.rejected_key, row.rejected)):
            at = index.setdefault((row.prompt_key, key), len(sequences))
            if at == len(sequences):
                sequences.append(encode(scorer.tokenizer, row.prompt, text, scorer.rendering,
                                        limit))
            ends.append(at)
        pairs.append((*ends, row.subset))
    rewards = scorer.score_ids(sequences)
    correct = truncated = 0
    margin_sum = 0.0
    by_subset: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for chosen, rejected, subset in pairs:
        won = rewards[chosen] > rewards[rejected]
        correct += won
        truncated += sequences[chosen].truncated or sequences[rejected].truncated
        margin_sum += rewards[chosen] - rewards[rejected]
        if subset is not None:
            by_subset[subset][0] += won
            by_subset[subset][1] += 1
    kept = len(pairs)
    return {
        "pairs": kept,
        "truncated": truncated,
        "skipped_too_long": 0,
        "accuracy": correct / kept if kept else None,
        "mean_margin": margin_sum / kept if kept else None,
        "subsets": {name: {"pairs": n, "accuracy": won / n}
                    for name, (won, n) in sorted(by_subset.items())},
    }


def evaluate_scores(scorer: RewardScorer, rows: Sequence, max_length: int | None = None) -> dict:
    """Held-out Pearson, MSE and pair accuracy of a regression model's predictions for rated
    completions (training.ml.scores.ScoreRow), truncated as in training, the rows cut counted."""
    from .scores import held_out_metrics

    limits = [x for x in (max_length, scorer.max_length) if x]
    limit = min(limits) if limits else None
    sequences = [encode(scorer.tokenizer, row.prompt, row.completion, scorer.rendering, limit)
                 for row in rows]
    predictions = scorer.score_ids(sequences)
    return {**held_out_metrics(rows, predictions),
            "truncated": sum(sequence.truncated for sequence in sequences)}
