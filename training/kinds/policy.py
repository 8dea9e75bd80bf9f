"""Policy: improve a causal LM against a registered reward model with PPO (ours), TRL's
RLOO or GRPO, or iterative DPO (best and worst of K samples, TRL's DPOTrainer); the result
is registered as a policy."""

import json
from pathlib import Path

from annotate.exporters import is_test_prompt
from annotate.models import Prompt
from config.errors import Invalid

from ..ml.policy import ALGORITHMS, PolicyTrainingConfig
from .base import Curve, JobKind, ModelSlot, Param, job_params, model_location

EVAL_FRACTION = 0.1  # of a project's prompts, held out to evaluate a policy


class PolicyKind(JobKind):
    name = "policy"
    label = "Policy"
    help = ("Train a policy against a reward model of this project on the project's prompts "
            "(a tenth held out to evaluate it); it is registered.")
    config_class = PolicyTrainingConfig
    entry = "training.ml.ppo:train_policy"
    models = (
        ModelSlot("base", "policy", "Policy", artifact_kind="policy",
                  help="A causal LM of the catalog, or a policy of this project to go on from"),
        ModelSlot("reward", "reward", "Reward model", artifact_kind="reward", catalog=False,
                  help="A reward model of this project"),
    )
    takes_prompts_file = True
    registers = "policy"
    params = (
        Param("algorithm", "ppo: ours; rloo, grpo: TRL's trainers; dpo: iterative DPO (the "
                           "reward model's best and worst of K samples per prompt)",
              choices=ALGORITHMS),
        Param("iterations", "dpo: rounds of sample, pair, train; each samples from the last"),
        Param("total_episodes", "Responses sampled in all"),
        Param("batch_size", "Responses per step"),
        Param("mini_batch_size", advanced=True),
        Param("ppo_epochs", "Passes over each batch of samples (dpo: over each iteration's "
                            "pairs)", label="PPO epochs", advanced=True),
        Param("learning_rate"),
        Param("kl_coef", "dpo: DPO's beta", label="KL coefficient"),
        Param("clip_range", advanced=True),
        Param("clip_range_value", advanced=True),
        Param("vf_coef", label="Value loss coefficient", advanced=True),
        Param("gamma", advanced=True),
        Param("lam", label="GAE lambda", advanced=True),
        Param("response_length", "Tokens per response"),
        Param("temperature"),
        Param("missing_eos_penalty", advanced=True),
        Param("num_generations", "RLOO / GRPO: responses per prompt; dpo: K, the samples "
                                 "best and worst are picked from", advanced=True),
        Param("max_prompt_length", advanced=True),
        Param("seed", advanced=True),
        Param("lora", label="LoRA adapter"),
        Param("lora_r", label="LoRA rank", advanced=True),
        Param("lora_alpha", label="LoRA alpha", advanced=True),
        Param("merge_adapter", label="Also save the merged model", advanced=True),
        Param("checkpoint_every", advanced=True),
        Param("eval_prompts", "Prompts the policy is judged on against the reference: the "
                              "held-out ones, then training prompts", advanced=True),
        Param("eval_samples", "Of those, samples shown side by side on the model page",
              advanced=True),
        Param("threads", "CPU threads (empty: one for a tiny model, else all)", advanced=True),
    )
    curves = (Curve("Mean reward", ("reward", "rlhf_reward")),
              Curve("KL to the reference", ("kl",)),
              Curve("Entropy", ("entropy",)),
              Curve("Policy and value loss", ("policy_loss", "value_loss")),
              Curve("Clip fraction", ("clip_fraction",)),
              Curve("Response length", ("response_length",)))
    set_by_job = {"policy": "-", "reward_model": "-", "prompts_file": "-",
                  "eval_prompts_file": None, "output_dir": "-"}

    def check(self, project, request, resolved) -> None:
        if not request.dataset_path and not project.prompts.filter(
                gold_tiers__isnull=True).exists():
            raise Invalid("The project has no prompts to train a policy on.")

    def prepare(self, job, directory: Path) -> PolicyTrainingConfig:
        if job.dataset_path:
            prompts_file, eval_file = job.dataset_path, job.eval_file or None
        else:
            prompts_file, eval_file = write_project_prompts(job.project, directory)
        return PolicyTrainingConfig(
            policy=model_location(job, "base"), reward_model=model_location(job, "reward"),
            prompts_file=prompts_file, eval_prompts_file=eval_file,
            output_dir=str(directory / "output"), **job_params(job))

    def artifact_fields(self, job, result: dict) -> dict:
        return {"model_dir": result["policy_dir"], "merged_dir": result.get("merged_dir"),
                "is_adapter": job.params.get("lora", True),
                "metrics": {"algorithm": job.params.get("algorithm", "ppo"),
                            "steps": result["steps"],
                            "train_seconds": result.get("train_seconds"),
                            "eval": result.get("eval") or {},
                            **({"iterations": result["iterations"]}
                               if "iterations" in result else {})}}

    def report_lines(self, job) -> list[str]:
        result, evaluation = job.result, job.result.get("eval") or {}
        lines = [f"Policy (registry id {result.get('artifact_id')}): {result['steps']} steps"]
        lines += [f"Iteration {it['iteration']}: mean reward of the samples {it['reward']:.4f}, "
                  f"{it['pairs']} pairs ({it['ties']} prompts tied)"
                  for it in result.get("iterations", ())]
        if evaluation:
            lines.append(
                f"Mean reward: policy {evaluation['policy_reward']:.4f}, reference "
                f"{evaluation['reference_reward']:.4f}; win rate {evaluation['win_rate']:.3f}; "
                f"KL {evaluation['kl']:.3f} on {evaluation_scope(evaluation)}")
        return lines


def evaluation_scope(evaluation: dict) -> str:
    """"32 prompts (3 held out, 29 also trained on)", or "40 held-out prompts".

    >>> evaluation_scope({"prompts": 16, "held_out": 2}), evaluation_scope({"prompts": 40})
    ('16 prompts (2 held out, 14 also trained on)', '40 held-out prompts')
    """
    prompts, held_out = evaluation["prompts"], evaluation.get("held_out", evaluation["prompts"])
    if held_out >= prompts:
        return f"{prompts} held-out prompts"
    return f"{prompts} prompts ({held_out} held out, {prompts - held_out} also trained on)"


def write_project_prompts(project, directory: Path) -> tuple[str, str | None]:
    """The project's prompts (gold ones left out), a tenth held out by a hash of the id."""
    train, held_out = directory / "prompts.jsonl", directory / "eval-prompts.jsonl"
    counts = {"train": 0, "eval": 0}
    with train.open("w", encoding="utf-8") as train_out, \
            held_out.open("w", encoding="utf-8") as eval_out:
        rows = (Prompt.objects.filter(project=project, gold_tiers__isnull=True)
                .order_by("id").values_list("id", "text", "messages"))
        for prompt_id, text, messages in rows.iterator(2000):
            line = json.dumps({"id": prompt_id, "prompt": messages or text}) + "\n"
            split = "eval" if is_test_prompt(prompt_id, EVAL_FRACTION, seed=0) else "train"
            (eval_out if split == "eval" else train_out).write(line)
            counts[split] += 1
    if not counts["train"]:
        raise ValueError("the project has no prompts to train a policy on")
    return str(train), str(held_out) if counts["eval"] else None


KIND = PolicyKind()
