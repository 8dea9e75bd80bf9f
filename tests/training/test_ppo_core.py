"""PPO's arithmetic on tensors with known answers, and against plain-Python references."""

import math
import random

import pytest
import torch

from training.ml import ppo_core


def reference_gae(rewards, values, length, gamma, lam):
    """GAE written out for one response of `length` tokens, in floats."""
    advantages = [0.0] * length
    running = 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages, [a + v for a, v in zip(advantages, values[:length], strict=False)]


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_the_definition_on_ragged_responses(seed):
    rng = random.Random(seed)
    batch, width = 4, 7
    lengths = [rng.randint(1, width) for _ in range(batch)]
    rewards = torch.tensor([[rng.uniform(-1, 1) for _ in range(width)] for _ in range(batch)])
    values = torch.tensor([[rng.uniform(-1, 1) for _ in range(width)] for _ in range(batch)])
    mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(width)] for n in lengths])
    gamma, lam = rng.choice([1.0, 0.99]), rng.choice([0.95, 0.5, 1.0])
    advantages, returns = ppo_core.gae(rewards, values, mask, gamma=gamma, lam=lam)
    for row, n in enumerate(lengths):
        expected_adv, expected_ret = reference_gae(rewards[row].tolist(), values[row].tolist(),
                                                   n, gamma, lam)
        assert advantages[row, :n].tolist() == pytest.approx(expected_adv, abs=1e-5)
        assert returns[row, :n].tolist() == pytest.approx(expected_ret, abs=1e-5)
        assert advantages[row, n:].abs().sum() == 0 and returns[row, n:].abs().sum() == 0


def test_with_lambda_one_and_no_discount_the_advantage_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 2.0]])
    values = torch.tensor([[0.3, 0.1, 0.4]])
    advantages, returns = ppo_core.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert returns[0].tolist() == pytest.approx([1.9, 1.8, 2.0])
    assert advantages[0].tolist() == pytest.approx([1.6, 1.7, 1.6])


def test_whitening_gives_zero_mean_and_unit_variance_on_the_mask_only():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    whitened = ppo_core.masked_whiten(values, mask)
    kept = whitened[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert kept.var(unbiased=True).item() == pytest.approx(1.0, abs=1e-5)
    assert whitened[~mask.bool()].abs().sum() == 0
    unshifted = ppo_core.masked_whiten(values, mask, shift_mean=False)
    assert unshifted[mask.bool()].mean().item() == pytest.approx(3.0, abs=1e-5)  # mean of 1..5


def test_the_kl_penalty_and_score_land_where_they_should():
    scores = torch.tensor([2.0, -1.0])
    logprobs = torch.tensor([[-1.0, -1.0, -1.0], [-0.5, -0.5, -0.5]])
    ref = torch.tensor([[-2.0, -1.0, -1.0], [-0.5, -1.5, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = ppo_core.penalised_rewards(scores, logprobs, ref, mask, kl_coef=0.5)
    assert kl.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert rewards.tolist() == [[-0.5, 0.0, 2.0], [0.0, -1.5, 0.0]]  # score on the last token


def test_response_mask_stops_after_the_first_eos():
    responses = torch.tensor([[7, 2, 2, 0], [7, 8, 9, 6], [2, 0, 0, 0], [7, 0, 0, 0]])
    mask, has_eos = ppo_core.response_mask(responses, eos_id=2, pad_id=0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True, False]


def test_the_clipped_policy_loss_stops_pushing_past_the_clip():
    old = torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss, clip_fraction, approx_kl = ppo_core.policy_loss(new, old, advantages, mask, 0.2)
    loss.backward()
    # Token 0 is past 1 + 0.2 with a positive advantage: no gradient; token 1 still learns.
    assert new.grad[0, 0].item() == 0.0 and new.grad[0, 1].item() < 0
    assert loss.item() == pytest.approx(-(1.2 + 1.1) / 2)
    assert clip_fraction.item() == 0.5
    assert approx_kl.item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(1.1) ** 2) / 2)


def test_the_clipped_value_loss_takes_the_worse_of_the_two():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[0.0, 0.5]])
    loss, fraction = ppo_core.value_loss(new, old, returns, torch.ones(1, 2), clip_range=0.2)
    # token 0: unclipped (1-0)^2 = 1, clipped (0.2-0)^2 = 0.04 -> 1; token 1: within the clip.
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.16) / 2)
    assert fraction.item() == 0.0


def test_entropy_and_logprobs():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    assert ppo_core.entropy_of(logits).item() == pytest.approx(-(0.5 * math.log(0.5)
                                                                  + 0.5 * math.log(0.25)))
    tokens = torch.tensor([[1]])
    assert ppo_core.logprobs_of(logits, tokens).item() == pytest.approx(math.log(0.25))
    hotter = ppo_core.logprobs_of(logits, tokens, temperature=2.0).item()
    expected = math.log(0.25 ** 0.5 / (0.5 ** 0.5 + 2 * 0.25 ** 0.5))
    assert hotter == pytest.approx(expected)


def test_the_pure_core_does_not_import_django_or_transformers():
    import subprocess
    import sys

    code = ("import sys, training.ml.ppo_core; "
            "print('django' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
