from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training import services
from training.management.follow import follow
from training.models import ModelArtifact, TrainingJob


class Command(BaseCommand):
    help = ("A policy writes K completions for each prompt, imported into the project as a new "
            "round to rank. Queues a job for a GPU worker and follows it; --inline runs the same "
            "job here, without a worker.")

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("--policy", required=True,
                            help="A Hugging Face name, a path, or a policy's registry id")
        parser.add_argument("--prompts", type=Path,
                            help="A JSONL file of {\"prompt\": ...} (default: the project's own)")
        parser.add_argument("--k", type=int, help="Completions per prompt (the project's K)")
        parser.add_argument("--max-new-tokens", type=int, default=128)
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--top-p", type=float, default=0.95)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--inline", action="store_true")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project_slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project_slug']!r}.")
        policy, artifact = options["policy"], None
        if policy.isdigit():
            artifact = ModelArtifact.objects.filter(id=int(policy), project=project,
                                                    kind="policy").first()
            if artifact is None:
                raise CommandError(f"--policy {policy}: no policy of this project with that id")
            policy = ""
        prompts = options["prompts"]
        if prompts is not None and not prompts.is_file():
            raise CommandError(f"--prompts {prompts}: no such file")
        params = {"max_new_tokens": options["max_new_tokens"],
                  "temperature": options["temperature"], "top_p": options["top_p"],
                  "seed": options["seed"], "batch_size": options["batch_size"]}
        if options["k"] is not None:
            params["k"] = options["k"]
        try:
            job, _ = services.generate_job_create(
                project=project, params=params, base_model=policy, base_artifact=artifact,
                dataset_path=str(prompts.resolve()) if prompts else "", created_by=None,
                dispatch=not options["inline"])
        except services.JobRefused as refused:
            raise CommandError(str(refused)) from None
        if options["inline"]:
            services.job_run(job.id)
            job.refresh_from_db()
            if job.status != TrainingJob.Status.SUCCEEDED:
                raise CommandError(f"job {job.id} {job.status}: {job.error[-2000:]}")
        else:
            self.stdout.write(f"Queued job {job.id}; following it")
            job = follow(job)
        self.stdout.write(f"Round {job.result['round']}: {job.result['prompts']} prompts with "
                          f"{job.result['completions']} completions imported into "
                          f"{project.slug}")
