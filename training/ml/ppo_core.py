"""The arithmetic of PPO for language models, as pure functions on tensors.

Shapes: B responses of up to T tokens. `mask` is 1.0 on a response's tokens (up to and
including its EOS) and 0.0 on padding after it. Following InstructGPT and "The N+
Implementation Details of RLHF with PPO" (Huang et al., 2024):

- the reward of a response is the reward model's score, given at its last token, minus a
  per-token KL penalty against the frozen reference policy;
- advantages come from GAE over those per-token rewards and the value model's estimates,
  then are whitened over the batch;
- the policy loss is PPO's clipped surrogate, the value loss is clipped around the old values.

No model, tokenizer or optimiser here: ppo.py feeds these.
"""

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask is 1.

    >>> masked_mean(torch.tensor([1.0, 2.0, 30.0]), torch.tensor([1.0, 1.0, 0.0])).item()
    1.5
    """
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """Scale to unit variance over the masked positions (and centre them if shift_mean).

    >>> w = masked_whiten(torch.tensor([1.0, 3.0, 99.0]), torch.tensor([1.0, 1.0, 0.0]))
    >>> [round(x, 4) for x in w[:2].tolist()]
    [-0.7071, 0.7071]
    """
    mean = masked_mean(values, mask)
    centred = values - mean
    variance = masked_mean(centred ** 2, mask)
    # The unbiased variance, as the reference implementations use.
    count = mask.sum()
    if count > 1:
        variance = variance * count / (count - 1)
    whitened = centred * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
                ) -> torch.Tensor:
    """Log-probability of each token under logits (B, T, V) at the sampling temperature."""
    log_probs = F.log_softmax(logits.float() / temperature, dim=-1)
    return torch.gather(log_probs, 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's next-token distribution, (B, T, V) -> (B, T).

    >>> round(entropy_of(torch.zeros(1, 1, 4)).item(), 4)  # uniform over 4: log 4
    1.3863
    """
    logits = logits.float()
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def response_mask(responses: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
    """(mask, has_eos): 1.0 up to and including each response's first EOS, 0.0 after it.

    >>> mask, has_eos = response_mask(torch.tensor([[5, 2, 7], [5, 6, 7]]), eos_id=2, pad_id=0)
    >>> mask.tolist(), has_eos.tolist()
    ([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], [True, False])
    """
    is_eos = responses == eos_id
    has_eos = is_eos.any(dim=1)
    # Positions strictly after the first EOS are padding; so are pad tokens of generate().
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    mask = (~after_eos & ((responses != pad_id) | is_eos)).float()
    return mask, has_eos


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last masked position (0 for an empty row)."""
    lengths = mask.sum(dim=1).long()
    return (lengths - 1).clamp(min=0)


def penalised_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * (logp - ref_logp) everywhere, plus the score at the last
    token. Return (rewards, kl), both zero on padding.

    >>> rewards, kl = penalised_rewards(torch.tensor([1.0]), torch.tensor([[-1.0, -2.0, 0.0]]),
    ...                                 torch.tensor([[-1.5, -2.0, 0.0]]),
    ...                                 torch.tensor([[1.0, 1.0, 0.0]]), kl_coef=0.1)
    >>> [round(x, 4) for x in rewards[0].tolist()] == [-0.05, 1.0, 0.0], kl[0].tolist()
    (True, [0.5, 0.0, 0.0])
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_index(mask)] += scores
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over each response's tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and
    A zero past the last token; returns = A + V.

    >>> adv, ret = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]),
    ...                torch.ones(1, 2), gamma=1.0, lam=0.5)
    >>> [round(x, 4) for x in adv[0].tolist()], [round(x, 4) for x in ret[0].tolist()]
    ([0.1, 0.8], [0.6, 1.0])
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def policy_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                advantages: torch.Tensor, mask: torch.Tensor, clip_range: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate: (loss, clip fraction, approximate KL to the old policy).

    >>> loss, clipfrac, _ = policy_loss(torch.log(torch.tensor([[1.5, 0.5]])),
    ...                                 torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]),
    ...                                 torch.ones(1, 2), clip_range=0.2)
    >>> round(loss.item(), 4), clipfrac.item()  # ratio 1.5 clipped to 1.2; 0.5 to 0.8
    (-0.2, 1.0)
    """
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean(log_ratio ** 2, mask)
    return loss, clip_fraction, approx_kl


def value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2): (loss, clipfrac).

    >>> loss, frac = value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]),
    ...                         torch.tensor([[1.0]]), torch.ones(1, 1), clip_range=0.5)
    >>> loss.item(), frac.item()  # clipped to 0.5: (0.5 - 1)^2 = 0.25 < (2 - 1)^2 = 1
    (0.5, 0.0)
    """
    clipped = old_values + torch.clamp(new_values - old_values, -clip_range, clip_range)
    unclipped_loss = (new_values - returns) ** 2
    clipped_loss = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_loss, clipped_loss), mask)
    return loss, masked_mean((clipped_loss > unclipped_loss).float(), mask)
