from training.management.kind_command import KindCommand


class Command(KindCommand):
    kind_name = "sft"
