"""Benchmark: our SFT and DPO jobs against TRL's SFTTrainer and DPOTrainer called directly.

    .venv/bin/python bench/sft_dpo.py [--prompts 100] [--repeats 3]

Same data, same model, same settings, one CPU thread each (what our jobs pick for a tiny
model), every run in a fresh process:

- data: the synthetic learnable preference (completion j of a prompt carries "helpful" j
  times, more is better), K = 4, --prompts training prompts and 20 held-out ones, written
  as an export writes its train.jsonl / test.jsonl. SFT trains on each prompt's best-ranked
  completion, DPO on every pair.
- model: the tiny Llama (110k parameters) pretrained a little on the generated corpus, with a
  new LoRA adapter (r 16, all linear layers).
- "ours": `python -m training.ml.run spec.json`, the training process a worker starts for a
  job (the spec is what the job kind writes); progress goes out as JSON lines.
- "TRL": a script that builds the same rows, calls the trainer with the same arguments,
  trains, evaluates the held-out data once and saves the adapter.

Prints one table: wall time of the process (imports included), the training loop's time
(TRL's train_runtime), the final training loss and the held-out result.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch" / "sft_dpo"
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "sft": {"epochs": 3.0, "batch_size": 8, "learning_rate": 0.003},
    "dpo": {"epochs": 1.0, "batch_size": 8, "learning_rate": 0.003},
}
COMMON = {"lora": True, "lora_r": 16, "lora_alpha": 32, "max_length": 512, "seed": 0,
          "checkpoint_every": 0, "threads": 1, "eval_batch_size": 32}


def prepare(prompts: int) -> dict:
    from training.ml.synthetic import preference_rows, write_rows
    from training.ml.tiny import build_tiny_models, pretrain_tiny_policy

    models = build_tiny_models(SCRATCH / "tiny")
    pretrain_tiny_policy(models["policy"])
    train = write_rows(SCRATCH / "train.jsonl", preference_rows(prompts, k=4, seed=1))
    test = write_rows(SCRATCH / "test.jsonl", preference_rows(20, k=4, seed=2, first_id=10**5))
    return {"policy": str(models["policy"]), "train_file": str(train), "eval_file": str(test)}


def ours(kind: str, data: dict, out: Path) -> dict:
    """The job's training process, as the worker runs it."""
    module = {"sft": "training.ml.sft", "dpo": "training.ml.dpo"}[kind]
    config_class = {"sft": "SFTTrainingConfig", "dpo": "DPOTrainingConfig"}[kind]
    spec = {"kind": kind, "entry": f"{module}:train_{kind}",
            "config_class": f"{module}:{config_class}",
            "config": {**data, "output_dir": str(out), **COMMON, **SETTINGS[kind]}}
    spec_file = out.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    lines = _run([sys.executable, "-m", "training.ml.run", str(spec_file)])
    events = [json.loads(line) for line in lines if line.startswith("{")]
    result = next(e["result"] for e in events if e["event"] == "result")
    steps = [e for e in events if e["event"] == "step"]
    held_out = result["eval"]["loss_after"] if kind == "sft" else result["eval"]["accuracy"]
    return {"loop": result["loop_seconds"], "loss": steps[-1]["metrics"]["loss"],
            "held_out": held_out, "steps": result["steps"]}


def trl_child(kind: str, data: dict, out: str) -> dict:
    """TRL's trainer called directly (in the child process)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml.data import group_by_prompt, read_preferences
    from training.ml.sft import best_completions

    torch.set_num_threads(COMMON["threads"])
    settings = SETTINGS[kind]
    tokenizer = AutoTokenizer.from_pretrained(data["policy"])
    model = AutoModelForCausalLM.from_pretrained(data["policy"])
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=COMMON["lora_r"],
                      lora_alpha=COMMON["lora_alpha"], target_modules="all-linear")
    if kind == "sft":
        from trl import SFTConfig as Config
        from trl import SFTTrainer as Trainer

        def rows(path):
            return best_completions(group_by_prompt(read_preferences(path)))
    else:
        from trl import DPOConfig as Config
        from trl import DPOTrainer as Trainer

        def rows(path):
            return [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
                    for r in read_preferences(path)]
    args = Config(output_dir=out, num_train_epochs=settings["epochs"],
                  per_device_train_batch_size=settings["batch_size"],
                  per_device_eval_batch_size=COMMON["eval_batch_size"],
                  learning_rate=settings["learning_rate"], max_length=COMMON["max_length"],
                  seed=COMMON["seed"], bf16=False, use_cpu=True, report_to=[],
                  logging_steps=1, activation_checkpointing=False, save_strategy="no")
    trainer = Trainer(model=model, args=args, processing_class=tokenizer, peft_config=lora,
                      train_dataset=Dataset.from_list(rows(data["train_file"])),
                      eval_dataset=Dataset.from_list(rows(data["eval_file"])))
    state = trainer.train()
    evaluation = trainer.evaluate()
    trainer.save_model(out)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    held_out = evaluation["eval_loss"] if kind == "sft" else evaluation[
        "eval_rewards/accuracies"]
    return {"loop": state.metrics["train_runtime"], "loss": losses[-1], "held_out": held_out,
            "steps": trainer.state.global_step}


def _run(command: list[str]) -> list[str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"run failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()


def timed(run, *args) -> dict:
    started = time.perf_counter()
    found = run(*args)
    return {**found, "wall": time.perf_counter() - started}


def trl(kind: str, data: dict, out: Path) -> dict:
    """TRL's trainer in a fresh process (this script's --child)."""
    lines = _run([sys.executable, __file__, "--child", kind, json.dumps(data), str(out)])
    return json.loads(lines[-1])


def cell(found: list[dict], key: str, digits: int = 2) -> str:
    values = [run[key] for run in found]
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "DATA", "OUT"))
    args = parser.parse_args()
    if args.child:
        kind, data, out = args.child
        print(json.dumps(trl_child(kind, json.loads(data), out)))
        return
    SCRATCH.mkdir(parents=True, exist_ok=True)
    data = prepare(args.prompts)
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):  # alternating, so a busy moment hits both
        for kind in ("sft", "dpo"):
            for who, run in (("ours", ours), ("TRL", trl)):
                out = SCRATCH / f"{kind}-{repeat}-{who.lower()}"
                runs.setdefault((kind, who), []).append(timed(run, kind, data, out))
    print(f"{args.prompts} prompts x K=4; {args.repeats} runs each, median (min-max)")
    print("| trainer | run | steps | process wall s | training loop s | final loss | held-out |")
    print("|---|---|---|---|---|---|---|")
    for (kind, who), found in runs.items():
        print(f"| {kind} | {who} | {found[0]['steps']} | {cell(found, 'wall')} | "
              f"{cell(found, 'loop')} | {cell(found, 'loss', 4)} | "
              f"{cell(found, 'held_out', 4)} |")
    for kind in ("sft", "dpo"):
        ratio = (statistics.median(r["wall"] for r in runs[(kind, "ours")])
                 / statistics.median(r["wall"] for r in runs[(kind, "TRL")]))
        loop = (statistics.median(r["loop"] for r in runs[(kind, "ours")])
                / statistics.median(r["loop"] for r in runs[(kind, "TRL")]))
        print(f"{kind}: ours / TRL = {ratio:.2f} (process), {loop:.2f} (training loop)")


if __name__ == "__main__":
    main()
