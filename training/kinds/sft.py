"""SFT: fine-tune a policy on demonstrations, with TRL's SFTTrainer; registered as a policy.

On a ranking export, each prompt's best-ranked completion is its demonstration; on a
demonstrate project's export, each demonstration the labelers wrote is one example; a file may
hold {"prompt", "completion"} or {"messages"} lines (training.ml.sft)."""

from ..export_contents import DEMONSTRATIONS, PAIRS
from ..ml.sft import SFTTrainingConfig, report_lines
from .base import Curve
from .finetune import SHARED_PARAMS, FineTuneKind


class SFTKind(FineTuneKind):
    name = "sft"
    label = "SFT"
    help = ("Fine-tune a policy on each prompt's best-ranked completion in an export, on the "
            "responses labelers wrote in a demonstrate project's export, or on a file of "
            "demonstrations, with TRL's SFTTrainer; it is registered as a policy.")
    config_class = SFTTrainingConfig
    entry = "training.ml.sft:train_sft"
    reads = (DEMONSTRATIONS, PAIRS)  # from pairs: each prompt's best-ranked completion
    params = SHARED_PARAMS
    curves = (Curve("Loss", ("loss",)), Curve("Token accuracy", ("token_accuracy",)),
              Curve("Entropy", ("entropy",)))

    def report_lines(self, job) -> list[str]:
        return [*report_lines(job.result), self.registered_line(job)]


KIND = SFTKind()
