"""Score (prompt, response) pairs with a reward model, and evaluate it on held-out pairs.

A saved reward model gives the same scores here as through
`transformers.pipeline("text-classification", model=path, function_to_apply="none")` on
`reward_text(tokenizer, prompt, response)`, times the scale `alpha` applied at inference.
"""

from collections import defaultdict
from collections.abc import Sequence

from .data import PreferenceRow, Text, encode
from .loading import load_reward_model, load_tokenizer


class RewardScorer:
    """A reward model and its tokenizer, ready to score batches on one device."""

    def __init__(self, model, tokenizer, device=None, batch_size: int = 32):
        import torch

        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str, batch_size: int = 32) -> "RewardScorer":
        tokenizer = load_tokenizer(path)
        return cls(load_reward_model(path, tokenizer=tokenizer), tokenizer, batch_size=batch_size)

    def score_ids(self, sequences: Sequence[list[int]]) -> list[float]:
        """Return one reward per token sequence; batches are sorted by length to pad little."""
        import torch

        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        rewards = [0.0] * len(sequences)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                input_ids, attention = pad([sequences[i] for i in chunk],
                                           self.tokenizer.pad_token_id, self.device)
                logits = self.model(input_ids=input_ids, attention_mask=attention).logits
                for i, value in zip(chunk, logits[:, 0].float().tolist(), strict=True):
                    rewards[i] = value
        return rewards

    def score(self, items: Sequence[tuple[Text, Text]], alpha: float = 1.0) -> list[float]:
        """Return alpha * reward for each (prompt, response)."""
        sequences = [encode(self.tokenizer, prompt, response) for prompt, response in items]
        return [alpha * reward for reward in self.score_ids(sequences)]


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


def evaluate_pairs(scorer: RewardScorer, rows: Sequence[PreferenceRow],
                   max_length: int | None = None) -> dict:
    """Pair accuracy, mean reward margin, and accuracy per `subset` (RewardBench's layout).

    Each distinct completion of a prompt is scored once. Pairs with a sequence longer than
    `max_length` are left out and counted, as in training. Ties count as wrong.
    """
    sequences: list[list[int]] = []
    index: dict[tuple[str, str], int] = {}
    pairs = []
    for row in rows:
        ends = []
        for key, text in ((row.chosen_key, row.chosen), (row.rejected_key, row.rejected)):
            at = index.setdefault((row.prompt_key, key), len(sequences))
            if at == len(sequences):
                sequences.append(encode(scorer.tokenizer, row.prompt, text))
            ends.append(at)
        pairs.append((*ends, row.subset))
    rewards = scorer.score_ids(sequences)
    kept = correct = skipped = 0
    margin_sum = 0.0
    by_subset: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for chosen, rejected, subset in pairs:
        if max_length and max(len(sequences[chosen]), len(sequences[rejected])) > max_length:
            skipped += 1
            continue
        won = rewards[chosen] > rewards[rejected]
        kept += 1
        correct += won
        margin_sum += rewards[chosen] - rewards[rejected]
        if subset is not None:
            by_subset[subset][0] += won
            by_subset[subset][1] += 1
    return {
        "pairs": kept,
        "skipped_too_long": skipped,
        "accuracy": correct / kept if kept else None,
        "mean_margin": margin_sum / kept if kept else None,
        "subsets": {name: {"pairs": n, "accuracy": won / n}
                    for name, (won, n) in sorted(by_subset.items())},
    }
