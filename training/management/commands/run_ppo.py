from argparse import BooleanOptionalAction
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training import services
from training.management.follow import queue_and_follow
from training.ml.config import ConfigError
from training.ml.ppo import ALGORITHMS, PolicyTrainingConfig
from training.models import ModelArtifact


class Command(BaseCommand):
    help = ("Train a policy against a reward model with PPO (or TRL's RLOO / GRPO). Queues a "
            "job for a GPU worker and follows it; --inline trains here instead.")

    def add_arguments(self, parser):
        parser.add_argument("--policy", required=True,
                            help="A Hugging Face name, a path, or a policy's registry id")
        parser.add_argument("--reward-model", required=True,
                            help="A reward model's registry id (or, inline, a path)")
        parser.add_argument("--prompts", required=True,
                            help="A JSONL file of {\"prompt\": ...}, or a project's slug")
        parser.add_argument("--eval-prompts", help="Held-out prompts (JSONL) for evaluation")
        parser.add_argument("--out", type=Path, help="Copy (or, inline, write) the result here")
        parser.add_argument("--algorithm", choices=ALGORITHMS, default="ppo")
        parser.add_argument("--total-episodes", type=int, default=256)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--mini-batch-size", type=int, default=8)
        parser.add_argument("--ppo-epochs", type=int, default=2)
        parser.add_argument("--learning-rate", type=float, default=1e-5)
        parser.add_argument("--kl-coef", type=float, default=0.05)
        parser.add_argument("--response-length", type=int, default=32)
        parser.add_argument("--temperature", type=float, default=0.7)
        parser.add_argument("--num-generations", type=int, default=4)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--lora", action=BooleanOptionalAction, default=True)
        parser.add_argument("--merge", action="store_true", help="Also save the merged model")
        parser.add_argument("--name", help="Registry name (default: <project>-policy)")
        parser.add_argument("--inline", action="store_true",
                            help="Train in the foreground, without a worker (nothing is "
                                 "registered)")

    def handle(self, *args, **options):
        params = {"algorithm": options["algorithm"], "total_episodes": options["total_episodes"],
                  "batch_size": options["batch_size"],
                  "mini_batch_size": options["mini_batch_size"],
                  "ppo_epochs": options["ppo_epochs"], "learning_rate": options["learning_rate"],
                  "kl_coef": options["kl_coef"], "response_length": options["response_length"],
                  "temperature": options["temperature"],
                  "num_generations": options["num_generations"], "seed": options["seed"],
                  "lora": options["lora"], "merge_adapter": options["merge"]}
        if options["inline"]:
            return self._inline(params, options)
        reward = self._artifact(options["reward_model"], "reward", "--reward-model")
        policy = (self._artifact(options["policy"], "policy", "--policy")
                  if options["policy"].isdigit() else None)
        prompts = options["prompts"]
        dataset_path = ""
        if Path(prompts).is_file():
            dataset_path = str(Path(prompts).resolve())
            if options["eval_prompts"]:
                params["eval_file"] = str(Path(options["eval_prompts"]).resolve())
        elif prompts != reward.project.slug:
            raise CommandError(f"--prompts {prompts}: neither a file nor the slug of the reward "
                               f"model's project ({reward.project.slug})")
        if options["name"]:
            params["model_name"] = options["name"]
        queue_and_follow(self.stdout, lambda: services.policy_job_create(
            project=reward.project, params=params, reward_artifact=reward,
            base_model="" if policy else options["policy"], base_artifact=policy,
            dataset_path=dataset_path, created_by=None), self._report, options["out"],
            "policy_dir")

    def _artifact(self, value: str, kind: str, option: str) -> ModelArtifact:
        artifact = ModelArtifact.objects.filter(id=int(value) if value.isdigit() else -1,
                                                kind=kind).first()
        if artifact is None:
            raise CommandError(f"{option} {value}: no {kind} model with that registry id "
                               "(a path works with --inline)")
        return artifact

    def _inline(self, params: dict, options) -> None:
        from training.ml.ppo import train_policy
        from training.ml.progress import ConsoleReporter

        policy, reward = options["policy"], options["reward_model"]
        if policy.isdigit():
            policy = str(services.var_absolute(self._artifact(policy, "policy",
                                                              "--policy").path))
        if reward.isdigit():
            reward = str(services.var_absolute(self._artifact(reward, "reward",
                                                              "--reward-model").path))
        prompts = options["prompts"]
        if not Path(prompts).is_file():
            if not Project.objects.filter(slug=prompts).exists():
                raise CommandError(f"--prompts {prompts}: neither a file nor a project")
            raise CommandError("--inline reads prompts from a JSONL file; queue a job to use "
                               "a project's prompts")
        out = options["out"] or Path("var") / "inline-policy"
        try:
            config = PolicyTrainingConfig(policy=policy, reward_model=reward,
                                          prompts_file=prompts,
                                          eval_prompts_file=options["eval_prompts"],
                                          output_dir=str(out), **params)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self._report(train_policy(config, ConsoleReporter(self.stdout)))

    def _report(self, result: dict) -> None:
        evaluation = result["eval"]
        self.stdout.write(
            f"Policy: {result['policy_dir']} ({result['steps']} steps)\n"
            f"Mean reward: policy {evaluation['policy_reward']:.4f}, reference "
            f"{evaluation['reference_reward']:.4f}; win rate {evaluation['win_rate']:.3f}; "
            f"KL {evaluation['kl']:.3f} on {evaluation['prompts']} prompts")
