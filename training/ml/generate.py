"""A policy writes K completions for each prompt: the next round for labelers to rank.

generate_completions(config, reporter) writes the project's import format (one prompt per
line, every completion with its model and sampling parameters), so the new round goes in
through the same validated, all-or-nothing import as any file.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, JsonConfig
from .loading import load_tokenizer
from .ppo import encode_prompt, left_pad, read_prompts


@dataclass(frozen=True)
class GenerationConfig(JsonConfig):
    policy: str  # a name, a folder, or a saved LoRA adapter
    prompts_file: str  # JSONL {"prompt": text or messages}
    output_file: str
    k: int = 4
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 16  # prompts per generate() call
    max_prompt_length: int = 1024
    model_name: str = ""  # stored on every completion (default: the policy's path)
    threads: int | None = None

    def __post_init__(self):
        checks = [(2 <= self.k <= 9, "k: must be between 2 and 9"),
                  (1 <= self.max_new_tokens <= 8192, "max_new_tokens: must be 1 to 8192"),
                  (0 < self.temperature <= 10, "temperature: must be above 0"),
                  (0 < self.top_p <= 1, "top_p: must be above 0 and at most 1"),
                  (1 <= self.batch_size <= 1024, "batch_size: must be 1 to 1024")]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed}


def load_policy(path: str):
    from transformers import AutoModelForCausalLM

    from .loading import is_adapter

    if is_adapter(path):
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(path).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)


def generate_completions(config: GenerationConfig, reporter) -> dict:
    """Sample K completions per prompt in batches; write them as import lines."""
    import torch

    from .progress import Cancelled

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(config.policy)
    tokenizer.padding_side = "left"
    model = load_policy(config.policy).to(device).eval()
    prompts = read_prompts(config.prompts_file)
    model_name = config.model_name or config.policy
    total = -(-len(prompts) // config.batch_size)
    written = empty = 0
    with Path(config.output_file).open("w", encoding="utf-8") as out:
        for step, first in enumerate(range(0, len(prompts), config.batch_size), 1):
            batch = prompts[first:first + config.batch_size]
            ids, mask = left_pad([encode_prompt(tokenizer, p, config.max_prompt_length)
                                  for p in batch], tokenizer.pad_token_id)
            with torch.no_grad():
                output = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                    temperature=config.temperature, top_p=config.top_p, top_k=0,
                    max_new_tokens=config.max_new_tokens, num_return_sequences=config.k,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(output[:, ids.shape[1]:], skip_special_tokens=True)
            for index, prompt in enumerate(batch):
                completions = []
                for text in texts[index * config.k:(index + 1) * config.k]:
                    if not text.strip():  # the import refuses empty text: say so, keep it
                        text, empty = "(empty response)", empty + 1
                    completions.append({"text": text, "model": model_name,
                                        "params": config.sampling()})
                key = "messages" if isinstance(prompt, list) else "prompt"
                out.write(json.dumps({key: prompt, "completions": completions}) + "\n")
                written += 1
            if not reporter.step(step, total, {"prompts": written}):
                raise Cancelled(f"stopped after {written} of {len(prompts)} prompts")
    return {"prompts": written, "completions": written * config.k, "empty_responses": empty,
            "output_file": config.output_file}
