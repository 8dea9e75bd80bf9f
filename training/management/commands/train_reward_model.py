from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Export, Project
from training import services
from training.management.follow import queue_and_follow
from training.ml.config import REWARD_METHODS, ConfigError, RewardTrainingConfig


class Command(BaseCommand):
    help = ("Train a reward model on an export (its id) or a TRL preference JSONL file. "
            "Queues a job for a GPU worker and follows it; --inline trains here instead.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="An export id, or a JSONL path")
        parser.add_argument("--base-model", required=True, help="A Hugging Face name or a path")
        parser.add_argument("--out", type=Path, help="Copy (or, inline, write) the model here")
        parser.add_argument("--project", help="The project's slug (for a JSONL path, not inline)")
        parser.add_argument("--eval-file", help="Held-out pairs (default: the export's test split)")
        parser.add_argument("--method", choices=REWARD_METHODS, default="kway")
        parser.add_argument("--lora", action="store_true")
        parser.add_argument("--lora-r", type=int, default=16)
        parser.add_argument("--lora-alpha", type=int, default=32)
        parser.add_argument("--merge", action="store_true", help="Also save the merged model")
        parser.add_argument("--epochs", type=float, default=1.0)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--learning-rate", type=float, default=1e-4)
        parser.add_argument("--max-length", type=int, default=1024)
        parser.add_argument("--num-gpus", type=int, default=1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", help="Registry name (default: <project>-reward)")
        parser.add_argument("--inline", action="store_true",
                            help="Train in the foreground, without a worker, and print the "
                                 "held-out accuracy (nothing is registered)")

    def handle(self, *args, **options):
        export, train_file, eval_file = self._dataset(options)
        params = {"method": options["method"], "lora": options["lora"],
                  "lora_r": options["lora_r"], "lora_alpha": options["lora_alpha"],
                  "merge_adapter": options["merge"], "epochs": options["epochs"],
                  "batch_size": options["batch_size"], "learning_rate": options["learning_rate"],
                  "max_length": options["max_length"], "num_gpus": options["num_gpus"],
                  "seed": options["seed"]}
        if options["inline"]:
            return self._inline(params, options, train_file, eval_file)
        project = export.project if export else self._project(options["project"])
        if options["name"]:
            params["model_name"] = options["name"]
        if eval_file and not export:
            params["eval_file"] = eval_file
        queue_and_follow(self.stdout, lambda: services.reward_job_create(
            project=project, params=params, base_model=options["base_model"], created_by=None,
            export=export, dataset_path="" if export else train_file), self._report,
            options["out"], "model_dir")

    def _dataset(self, options) -> tuple[Export | None, str, str | None]:
        dataset = options["dataset"]
        if dataset.isdigit() and not Path(dataset).exists():
            export = Export.objects.filter(id=int(dataset)).first()
            if export is None or export.status != Export.Status.SUCCEEDED:
                raise CommandError(f"No finished export with id {dataset}.")
            folder = services.var_absolute(export.directory)
            test = folder / "test.jsonl"
            eval_file = options["eval_file"] or (str(test) if test.stat().st_size else None)
            return export, str(folder / "train.jsonl"), eval_file
        if not Path(dataset).is_file():
            raise CommandError(f"--dataset {dataset}: neither an export id nor a file")
        return None, str(Path(dataset).resolve()), options["eval_file"]

    def _project(self, slug: str | None) -> Project:
        if not slug:
            raise CommandError("--project is needed to queue a job on a JSONL file "
                               "(or use --inline)")
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with slug {slug!r}.")
        return project

    def _inline(self, params, options, train_file, eval_file) -> None:
        from training.ml.progress import ConsoleReporter
        from training.ml.reward import train_reward_model

        out = options["out"] or Path("var") / "inline-reward-model"
        try:
            config = RewardTrainingConfig(base_model=options["base_model"], train_file=train_file,
                                          eval_file=eval_file, output_dir=str(out), **params)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        result = train_reward_model(config, ConsoleReporter(self.stdout))
        self._report(result)

    def _report(self, result: dict) -> None:
        self.stdout.write(f"Model: {result['model_dir']} ({result['steps']} steps, "
                          f"{result['pairs_per_second']} pairs/s)")
        evaluation = result.get("eval")
        if evaluation and evaluation["accuracy"] is not None:
            self.stdout.write(f"Held-out pair accuracy: {evaluation['accuracy']:.4f} on "
                              f"{evaluation['pairs']} pairs; mean margin "
                              f"{evaluation['mean_margin']:.4f}")
            for name, subset in evaluation["subsets"].items():
                self.stdout.write(f"  {name}: {subset['accuracy']:.4f} ({subset['pairs']})")
