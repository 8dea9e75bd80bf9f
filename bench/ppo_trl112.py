"""TRL 1.12.0's experimental PPOTrainer on the same models, prompts and settings as ours.

Run by bench/ppo.py with the Python of a scratch virtualenv holding trl==1.12.0 (TRL
removed PPO in 1.13): it imports nothing from this project. Prints one JSON line.
"""

import json
import resource
import sys
import time


def main() -> None:
    settings = json.loads(sys.argv[1])
    import copy

    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(2)
    torch.manual_seed(settings["seed"])
    tokenizer = AutoTokenizer.from_pretrained(settings["policy"])
    tokenizer.padding_side = "left"
    prompts = [json.loads(line)["prompt"] for line in open(settings["prompts"])]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})
    policy = AutoModelForCausalLM.from_pretrained(settings["policy"])
    reward = AutoModelForSequenceClassification.from_pretrained(settings["reward"], num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(settings["reward"], num_labels=1)
    peft_config = None
    reference = None
    if settings["lora"]:
        from peft import LoraConfig, TaskType

        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32,
                                 target_modules="all-linear")
    else:
        reference = copy.deepcopy(policy)
    args = PPOConfig(
        output_dir=settings["out"], per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=1,
        num_mini_batches=settings["batch_size"] // settings["mini_batch_size"],
        num_ppo_epochs=settings["ppo_epochs"], total_episodes=settings["total_episodes"],
        learning_rate=settings["learning_rate"], kl_coef=settings["kl_coef"],
        cliprange=settings["clip_range"], cliprange_value=settings["clip_range"],
        vf_coef=settings["vf_coef"], gamma=1.0, lam=0.95,
        response_length=settings["response_length"], temperature=settings["temperature"],
        missing_eos_penalty=settings["missing_eos_penalty"], stop_token="eos",
        local_rollout_forward_batch_size=settings["batch_size"], num_sample_generations=0,
        bf16=False, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no",
        seed=settings["seed"], activation_checkpointing=False)
    steps = []

    class Record(TrainerCallback):
        last = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "objective/scores" in logs:
                now = time.perf_counter()
                steps.append({"reward": logs["objective/scores"], "kl": logs["objective/kl"],
                              "seconds": now - self.last})
                self.last = now

    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy,
                         ref_model=reference, reward_model=reward, train_dataset=dataset,
                         value_model=value, peft_config=peft_config, callbacks=[Record()])
    Record.last = time.perf_counter()
    trainer.train()
    print(json.dumps({"steps": steps,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
