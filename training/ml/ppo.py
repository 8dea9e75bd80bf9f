"""PPO for a language-model policy against a reward model, on torch, transformers and peft.

TRL removed its PPO trainer in 1.13; this follows the published recipe instead
(InstructGPT; Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO"):

1. rollout: sample a response to each prompt of the batch from the policy;
2. score: the reward model reads (prompt, response) as it was trained, decoded and
   re-tokenized with its own tokenizer (so it may differ from the policy's); a response
   without EOS loses `missing_eos_penalty`;
3. per-token rewards: -kl_coef * (log pi - log pi_ref), plus the score at the last token;
   with LoRA the reference is the same weights with the adapter disabled;
4. values from a value model initialised from the reward model (or from the policy when
   their tokenizers differ), GAE advantages, whitened;
5. `ppo_epochs` passes of clipped policy and value losses over mini-batches.

train_policy(config, reporter) -> result dict. Checkpoints every `checkpoint_every` steps
hold the trainable weights, optimiser and RNG state, so a resumed run continues exactly.
"""

import random
import time
from pathlib import Path

from . import checkpoints
from .policy import (
    CHECKPOINT,
    Models,
    PolicyTrainingConfig,
    evaluate_policy,
    evaluation_prompts,
    full_sequences,
    policy_logits,
    read_prompts,
    response_logprobs,
    sample,
    save_policy,
    use_threads,
)
from .progress import Cancelled, Reporter


def train_policy(config: PolicyTrainingConfig, reporter: Reporter) -> dict:
    """Run PPO (or TRL's RLOO/GRPO, or iterative DPO); save the policy under
    output_dir/policy; evaluate it against the reference."""
    import torch

    if config.algorithm == "dpo":
        from .iterative_dpo import train_iterative_dpo

        return train_iterative_dpo(config, reporter)
    if config.algorithm != "ppo":
        from .online import train_online

        return train_online(config, reporter)

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    prompts = read_prompts(config.prompts_file)
    held_out = read_prompts(config.eval_prompts_file) if config.eval_prompts_file else []
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    models = Models(config)
    use_threads(config, models.policy)
    optimizer = torch.optim.AdamW(models.trainable(), lr=config.learning_rate, eps=1e-5)
    state = checkpoints.load(output / CHECKPOINT, _parameters(models))
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.random.set_rng_state(state["torch_rng"])
        start = int(state["step"])
    if start:
        reporter.log(f"resuming from the checkpoint at step {start} of {config.total_steps}")
    started = time.perf_counter()
    for step in range(start + 1, config.total_steps + 1):
        step_started = time.perf_counter()
        batch = _batch_prompts(prompts, step, config)
        metrics = ppo_step(models, optimizer, batch, config)
        metrics["seconds"] = time.perf_counter() - step_started
        keep_going = reporter.step(step, config.total_steps, metrics)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and (
                step < config.total_steps):
            path = checkpoints.save(output / CHECKPOINT, _parameters(models), step=step,
                                    optimizer=optimizer.state_dict(),
                                    torch_rng=torch.random.get_rng_state())
            reporter.checkpoint(step, str(path))
        if not keep_going:
            raise Cancelled(f"stopped after step {step} of {config.total_steps}")
    seconds = time.perf_counter() - started
    reporter.log("evaluating the policy against the reference")
    # Before saving: merging the adapter would leave no reference to compare with.
    judged, held_out_count = evaluation_prompts(held_out, prompts, config.eval_prompts)
    evaluation = evaluate_policy(models, judged, config, held_out=held_out_count)
    saved = save_policy(models.policy, models.tokenizer, output / "policy", config)
    return {"policy_dir": saved["model"], "merged_dir": saved.get("merged"),
            "steps": config.total_steps, "resumed_from_step": start,
            "train_seconds": round(seconds, 3), "eval": evaluation}


def _batch_prompts(prompts: list, step: int, config: PolicyTrainingConfig) -> list:
    """The prompts of a step: the list shuffled per pass from the seed, taken in order."""
    first = (step - 1) * config.batch_size
    orders: dict[int, list[int]] = {}  # a batch spans at most a few passes
    batch = []
    for episode in range(first, first + config.batch_size):
        epoch, index = divmod(episode, len(prompts))
        if epoch not in orders:
            orders[epoch] = list(range(len(prompts)))
            random.Random(config.seed * 7919 + epoch).shuffle(orders[epoch])
        batch.append(prompts[orders[epoch][index]])
    return batch


def ppo_step(models: Models, optimizer, prompts: list, config: PolicyTrainingConfig) -> dict:
    """One rollout of the batch, then ppo_epochs passes of mini-batch updates."""
    import torch

    from .ppo_core import (
        entropy_of,
        gae,
        masked_mean,
        masked_whiten,
        penalised_rewards,
        policy_loss,
        value_loss,
    )

    models.policy.eval()
    rollout = sample(models, prompts, config)
    input_ids, attention = full_sequences(rollout)
    with torch.no_grad():
        rollout.logprobs = response_logprobs(policy_logits(models.policy, input_ids, attention),
                                             rollout, config.temperature)
        rollout.ref_logprobs = response_logprobs(models.reference_logits(input_ids, attention),
                                                 rollout, config.temperature)
        start = rollout.query_ids.shape[1]
        rollout.values = models.values(input_ids, attention)[:, start - 1:-1] * rollout.mask
    rewards, kl = penalised_rewards(rollout.scores, rollout.logprobs, rollout.ref_logprobs,
                                    rollout.mask, config.kl_coef)
    advantages, returns = gae(rewards, rollout.values, rollout.mask, config.gamma, config.lam)
    advantages = masked_whiten(advantages, rollout.mask)
    models.policy.train()
    models.value.train()
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0,
              "value_clip_fraction": 0.0, "approx_kl": 0.0, "entropy": 0.0}
    updates = 0
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    for _ in range(config.ppo_epochs):
        order = torch.randperm(len(prompts), generator=generator).to(models.device)
        for first in range(0, len(prompts), config.mini_batch_size):
            rows = order[first:first + config.mini_batch_size]
            ids, att, mask = input_ids[rows], attention[rows], rollout.mask[rows]
            logits = policy_logits(models.policy, ids, att)
            new_logprobs = response_logprobs(logits, rollout, config.temperature, rows)
            new_values = models.values(ids, att)[:, start - 1:-1]
            pg, clip_fraction, approx_kl = policy_loss(
                new_logprobs, rollout.logprobs[rows], advantages[rows], mask, config.clip_range)
            vf, vf_clip = value_loss(new_values, rollout.values[rows], returns[rows], mask,
                                     config.clip_range_value)
            loss = pg + config.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                entropy = masked_mean(entropy_of(logits[:, start - 1:-1]), mask)
            for name, value in (("policy_loss", pg), ("value_loss", vf),
                                ("clip_fraction", clip_fraction),
                                ("value_clip_fraction", vf_clip), ("approx_kl", approx_kl),
                                ("entropy", entropy)):
                totals[name] += float(value.detach())
            updates += 1
    kl_sum = kl.sum(1)
    metrics = {name: total / updates for name, total in totals.items()}
    metrics |= {
        "reward": rollout.scores.mean().item(),
        "kl": kl_sum.mean().item(),
        "rlhf_reward": (rollout.scores - config.kl_coef * kl_sum).mean().item(),
        "response_length": rollout.mask.sum(1).mean().item(),
        "eos_share": rollout.has_eos.float().mean().item(),
    }
    return metrics


def _parameters(models: Models) -> dict:
    return checkpoints.trainable_parameters({"policy.": models.policy, "value.": models.value})
