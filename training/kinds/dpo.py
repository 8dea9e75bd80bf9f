"""DPO: train a policy on an export's preference pairs with TRL's DPOTrainer (the policy as
it starts is the reference); registered as a policy."""

from ..export_contents import PAIRS
from ..ml.dpo import DPOTrainingConfig, report_lines
from .base import Curve, Param
from .finetune import SHARED_PARAMS, FineTuneKind


class DPOKind(FineTuneKind):
    name = "dpo"
    label = "DPO"
    help = ("Train a policy on an export's preference pairs (or a file of them) with TRL's "
            "DPOTrainer, against itself as it starts; it is registered as a policy.")
    config_class = DPOTrainingConfig
    entry = "training.ml.dpo:train_dpo"
    reads = (PAIRS,)
    params = (*SHARED_PARAMS[:3],
              Param("beta", "How far the policy may move from the reference (higher: less)"),
              *SHARED_PARAMS[3:])
    curves = (Curve("Loss", ("loss",)),
              Curve("Implied preference accuracy in the batch", ("accuracy",)),
              Curve("Reward margin (chosen - rejected)", ("margin",)),
              Curve("Implicit rewards", ("chosen_reward", "rejected_reward")))

    def report_lines(self, job) -> list[str]:
        return [*report_lines(job.result), self.registered_line(job)]


KIND = DPOKind()
