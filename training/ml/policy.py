"""What every policy trainer shares: the config, the prompts, the models, sampling,
scoring texts with the reward model, evaluation against the reference, and saving.

Used by our PPO (training.ml.ppo), TRL's RLOO / GRPO (training.ml.online) and iterative
DPO (training.ml.iterative_dpo), so the four train, evaluate and save a policy the same way.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, JsonConfig
from .data import Text
from .loading import SEQ_CLS_HEADS, is_adapter, load_reward_model, load_tokenizer, save_model
from .text import clean_text

ALGORITHMS = ("ppo", "rloo", "grpo", "dpo")
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class PolicyTrainingConfig(JsonConfig):
    policy: str  # a Hugging Face name, a folder, or a saved LoRA adapter
    reward_model: str
    prompts_file: str  # JSONL lines {"prompt": text or messages}
    output_dir: str
    eval_prompts_file: str | None = None
    algorithm: str = "ppo"  # or TRL's "rloo" / "grpo" (training.ml.online), or iterative "dpo"
    num_generations: int = 4  # rloo / grpo: the group for the baseline; dpo: best and worst of
    iterations: int = 2  # dpo: sample, pick pairs, train; each round samples from the last
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    merge_adapter: bool = False
    total_episodes: int = 256  # responses sampled in all
    batch_size: int = 16  # responses per PPO step
    mini_batch_size: int = 8
    ppo_epochs: int = 2
    learning_rate: float = 1e-5
    kl_coef: float = 0.05
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    response_length: int = 32
    temperature: float = 0.7
    missing_eos_penalty: float = 1.0
    max_prompt_length: int = 256
    seed: int = 0
    checkpoint_every: int = 10
    eval_prompts: int = 32  # evaluated: the held-out prompts, then training ones up to this
    eval_samples: int = 8  # of those, shown side by side on the model page
    threads: int | None = None  # None: one for a tiny model, else torch's default (all)

    def __post_init__(self):
        problems = []
        checks = [
            (self.algorithm in ALGORITHMS, f"algorithm: must be one of {', '.join(ALGORITHMS)}"),
            (1 <= self.batch_size <= 4096, "batch_size: must be between 1 and 4096"),
            (1 <= self.mini_batch_size <= self.batch_size
             and self.batch_size % self.mini_batch_size == 0,
             "mini_batch_size: must divide batch_size"),
            (1 <= self.ppo_epochs <= 32, "ppo_epochs: must be between 1 and 32"),
            (self.total_episodes >= self.batch_size,
             "total_episodes: must be at least batch_size"),
            (0 < self.learning_rate < 1, "learning_rate: must be above 0 and below 1"),
            (0 <= self.kl_coef <= 10, "kl_coef: must be between 0 and 10"),
            (0 < self.clip_range < 1, "clip_range: must be above 0 and below 1"),
            (0 < self.clip_range_value <= 100, "clip_range_value: must be above 0"),
            (0 <= self.vf_coef <= 10, "vf_coef: must be between 0 and 10"),
            (0 < self.gamma <= 1 and 0 <= self.lam <= 1, "gamma, lam: must be in (0, 1]"),
            (1 <= self.response_length <= 8192, "response_length: must be 1 to 8192"),
            (0 < self.temperature <= 10, "temperature: must be above 0"),
            (self.missing_eos_penalty >= 0, "missing_eos_penalty: must be 0 or more"),
            (self.checkpoint_every >= 0, "checkpoint_every: must be 0 (never) or more"),
            (1 <= self.eval_prompts <= 10_000, "eval_prompts: must be between 1 and 10000"),
            (0 <= self.eval_samples <= 1000, "eval_samples: must be between 0 and 1000"),
            (self.threads is None or 1 <= self.threads <= 256,
             "threads: must be between 1 and 256"),
            (not self.merge_adapter or self.lora, "merge_adapter: needs lora"),
            (self.algorithm == "ppo" or (self.num_generations >= 2 and (
                self.algorithm == "dpo" or self.batch_size % self.num_generations == 0)),
             "num_generations: must be 2 or more (rloo, grpo, dpo) and divide batch_size "
             "(rloo, grpo)"),
            (1 <= self.iterations <= 100, "iterations: must be between 1 and 100"),
            (self.algorithm != "dpo" or self.kl_coef > 0,
             "kl_coef: must be above 0 for dpo (it is DPO's beta)"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def total_steps(self) -> int:
        return math.ceil(self.total_episodes / self.batch_size)


def read_prompts(path: str) -> list[Text]:
    """Prompts from JSONL: {"prompt": text or [{role, content}, ...]} per line."""
    import json

    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{Path(path).name}, line {number}, field 'prompt': missing or "
                             "not JSON") from None
        if not (isinstance(prompt, str) and prompt) and not isinstance(prompt, list):
            raise ValueError(f"{Path(path).name}, line {number}, field 'prompt': must be text "
                             "or a message list")
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"{Path(path).name}: no prompts")
    return prompts


# --- models -----------------------------------------------------------------------------------

TINY_MODEL = 5_000_000  # parameters: below this, one CPU thread runs a step fastest


def use_threads(config, model) -> int:
    """Set torch's CPU threads to config.threads (a policy's or a generation's config); unset,
    to one for a tiny model, else leave torch's default (every core). Return the number in
    use.

    A tiny model's matrices are too small to share among threads, and on a shared CPU (the
    web server, a second worker, a reward job) threads that wait on each other spin: on the
    demo's 110k-parameter policy on 2 busy cores a PPO step took 1.7 s with one thread and
    7 to 35 s with two (bench/README.md, "Demo round on 2 cores").
    """
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    elif sum(p.numel() for p in model.parameters()) < TINY_MODEL:
        torch.set_num_threads(1)
    return torch.get_num_threads()



class Models:
    """The policy (LoRA on its base: the base is the reference), reward and value models."""

    def __init__(self, config: PolicyTrainingConfig, reference_path: str | None = None,
                 value_model: bool = True):
        import copy

        import torch
        from transformers import AutoModelForCausalLM

        self.config = config
        self.tokenizer = load_tokenizer(config.policy)
        self.tokenizer.padding_side = "left"
        if is_adapter(config.policy):
            from peft import AutoPeftModelForCausalLM

            self.policy = AutoPeftModelForCausalLM.from_pretrained(config.policy,
                                                                   is_trainable=True)
        else:
            self.policy = AutoModelForCausalLM.from_pretrained(config.policy, use_safetensors=True)
            if config.lora:
                from peft import LoraConfig, TaskType, get_peft_model

                self.policy = get_peft_model(self.policy, LoraConfig(
                    task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                    lora_dropout=0.0, target_modules="all-linear"))
        if reference_path is not None:  # a fine-tuned policy judged against where it began
            self.reference = AutoModelForCausalLM.from_pretrained(reference_path,
                                                                  use_safetensors=True)
        elif hasattr(self.policy, "disable_adapter"):
            self.reference = None  # the base under the adapter
        else:
            self.reference = copy.deepcopy(self.policy)
        if self.reference is not None:
            self.reference.eval().requires_grad_(False)
        from .scoring import RewardScorer

        self.scorer = RewardScorer.load(config.reward_model)  # on its device, frozen
        self.scorer.model.requires_grad_(False)
        self.same_tokenizer = self.scorer.tokenizer.get_vocab() == self.tokenizer.get_vocab()
        # The value model reads the policy's tokens: from the reward model when they share a
        # tokenizer (it already knows what is good), else from the policy's own weights.
        # Iterative DPO trains no value model (value_model=False): none is loaded.
        value_from = config.reward_model if self.same_tokenizer else config.policy
        self.value = (load_reward_model(value_from, tokenizer=self.tokenizer, trainable=True)
                      if value_model else None)
        for model in (self.policy, self.value):
            for module in model.modules() if model is not None else ():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        if self.value is not None:
            self.value_backbone = getattr(self.value, self.value.base_model_prefix)
            self.value_head = next(getattr(self.value, name) for name in SEQ_CLS_HEADS
                                   if hasattr(self.value, name))
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for model in (self.policy, self.reference, self.value):
            if model is not None:
                model.to(self.device)

    def reference_logits(self, input_ids, attention_mask):
        import contextlib

        import torch

        with torch.no_grad():
            if self.reference is not None:
                return policy_logits(self.reference, input_ids, attention_mask)
            disabled = self.policy.disable_adapter()
            with disabled if disabled is not None else contextlib.nullcontext():
                return policy_logits(self.policy, input_ids, attention_mask)

    def values(self, input_ids, attention_mask):
        hidden = self.value_backbone(input_ids=input_ids, attention_mask=attention_mask,
                                     position_ids=positions(attention_mask)).last_hidden_state
        return self.value_head(hidden).squeeze(-1).float()

    def trainable(self) -> list:
        return [p for m in (self.policy, self.value) for p in m.parameters() if p.requires_grad]


def positions(attention_mask):
    """Position ids that skip left padding, as generate() uses."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def policy_logits(model, input_ids, attention_mask):
    return model(input_ids=input_ids, attention_mask=attention_mask,
                 position_ids=positions(attention_mask)).logits


# --- rollouts ---------------------------------------------------------------------------------


def encode_prompt(tokenizer, prompt: Text, max_length: int) -> list[int]:
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
    else:
        ids = tokenizer(text=prompt)["input_ids"]
    return list(ids)[-max_length:]


def left_pad(sequences: list[list[int]], pad_id: int):
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
        mask[row, width - len(sequence):] = 1
    return ids, mask


@dataclass
class Rollout:
    prompts: list
    query_ids: object  # (B, Q) left-padded
    query_mask: object
    responses: object  # (B, T)
    mask: object  # (B, T) float: the response's tokens
    texts: list[str]
    has_eos: object
    scores: object  # (B,) after the missing-EOS penalty
    rewards: object  # (B,) the reward model's scores, before it
    logprobs: object = None
    ref_logprobs: object = None
    values: object = None


def sample(models: Models, prompts: list[Text], config: PolicyTrainingConfig,
           greedy: bool = False, reference: bool = False) -> Rollout:
    """Generate one response per prompt and score it with the reward model."""
    import contextlib

    import torch

    from .ppo_core import response_mask

    queries = [encode_prompt(models.tokenizer, p, config.max_prompt_length) for p in prompts]
    query_ids, query_mask = (t.to(models.device) for t in left_pad(queries, models.pad_id))
    context = (models.policy.disable_adapter() if reference and models.reference is None
               else contextlib.nullcontext())
    generator = models.reference if reference and models.reference is not None else models.policy
    with torch.no_grad(), context:
        output = generator.generate(
            input_ids=query_ids, attention_mask=query_mask, max_new_tokens=config.response_length,
            do_sample=not greedy, temperature=config.temperature if not greedy else None,
            top_k=0, top_p=1.0, pad_token_id=models.pad_id, eos_token_id=models.eos_id)
    responses = output[:, query_ids.shape[1]:]
    if responses.shape[1] < config.response_length:  # every response ended early
        pad = torch.full((responses.shape[0], config.response_length - responses.shape[1]),
                         models.pad_id, dtype=responses.dtype, device=responses.device)
        responses = torch.cat([responses, pad], dim=1)
    mask, has_eos = response_mask(responses, models.eos_id, models.pad_id)
    texts = [models.tokenizer.decode(row[:int(n)], skip_special_tokens=True)
             for row, n in zip(responses, mask.sum(1).tolist(), strict=True)]
    rewards = score_texts(models, prompts, texts)
    scores = rewards - config.missing_eos_penalty * (~has_eos).float()
    return Rollout(prompts, query_ids, query_mask, responses, mask, texts, has_eos, scores,
                   rewards)


def score_texts(models: Models, prompts: list[Text], texts: list[str]):
    """The reward model's scores, on its own tokenization of (prompt, response text)."""
    import torch

    items = [(prompt, [{"role": "assistant", "content": text}] if isinstance(prompt, list)
              else text) for prompt, text in zip(prompts, texts, strict=True)]
    return torch.tensor(models.scorer.score(items), device=models.device)


def full_sequences(rollout: Rollout):
    import torch

    input_ids = torch.cat([rollout.query_ids, rollout.responses], dim=1)
    attention = torch.cat([rollout.query_mask, rollout.mask.long()], dim=1)
    return input_ids, attention


def response_logprobs(logits, rollout: Rollout, temperature: float, rows=None):
    """Log-probabilities of the response tokens (of `rows` of the rollout, if given), from
    the logits of the full sequences."""
    from .ppo_core import logprobs_of

    start = rollout.query_ids.shape[1]
    responses = rollout.responses if rows is None else rollout.responses[rows]
    return logprobs_of(logits[:, start - 1:-1], responses, temperature)


# --- evaluation and saving --------------------------------------------------------------------


def evaluation_prompts(held_out: list, train: list, count: int) -> tuple[list, int]:
    """The prompts to judge a policy on, `count` of them (all there are if fewer): the
    held-out ones first, then training prompts; and how many of them are held out.

    A small project holds out few prompts (a tenth of the demo's 16 is 1 or 2): one
    comparison says nothing, so training prompts fill the rest and the page says so.

    >>> evaluation_prompts(["h1", "h2"], ["t1", "t2", "t3"], count=4)
    (['h1', 'h2', 't1', 't2'], 2)
    >>> evaluation_prompts(["h1"], ["t1"], count=32)
    (['h1', 't1'], 1)
    """
    chosen = list(held_out[:count])
    return chosen + list(train[:count - len(chosen)]), len(chosen)


def evaluate_policy(models: Models, prompts: list, config: PolicyTrainingConfig,
                    held_out: int | None = None) -> dict:
    """Judge the policy against the reference on `prompts` (the first `held_out` of them not
    trained on): one sample of each per prompt at the training temperature, from the same
    seed, both scored by the reward model.

    Returns every field, always: the mean reward model score of each (before the missing-EOS
    penalty), the policy's win rate (ties count half), its KL to the reference (log pi -
    log pi_ref on its own samples, summed over a response, mean over prompts), the mean
    response length in tokens of each, how many policy samples are the reference's word for
    word (a policy that has barely moved), and the first `eval_samples` prompts side by side.
    """
    import torch

    models.policy.eval()
    rng_state = torch.random.get_rng_state()
    found: dict[str, list] = {name: [] for name in (
        "policy_reward", "reference_reward", "policy_length", "reference_length", "kl",
        "policy_text", "reference_text")}
    for first in range(0, len(prompts), config.batch_size):  # a batch at a time, as trained
        chunk = prompts[first:first + config.batch_size]
        rollouts = {}
        for name in ("policy", "reference"):
            torch.manual_seed(config.seed + 1 + first)
            rollouts[name] = sample(models, chunk, config, reference=name == "reference")
            found[f"{name}_reward"] += rollouts[name].rewards.tolist()
            found[f"{name}_length"] += rollouts[name].mask.sum(1).tolist()
            found[f"{name}_text"] += [clean_text(text) for text in rollouts[name].texts]
        found["kl"] += _kl_to_reference(models, rollouts["policy"], config).tolist()
    torch.random.set_rng_state(rng_state)
    policy, reference = found["policy_reward"], found["reference_reward"]
    wins = [1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy, reference,
                                                                       strict=True)]
    held_out = len(prompts) if held_out is None else held_out
    samples = [{"prompt": prompts[i], "held_out": i < held_out,
                "policy": found["policy_text"][i], "policy_reward": policy[i],
                "reference": found["reference_text"][i], "reference_reward": reference[i]}
               for i in range(min(config.eval_samples, len(prompts)))]
    return {"prompts": len(prompts), "held_out": held_out, "temperature": config.temperature,
            **{name: _mean(found[name]) for name in (
                "policy_reward", "reference_reward", "kl", "policy_length",
                "reference_length")},
            "win_rate": _mean(wins), "samples": samples,
            "same_as_reference": sum(p == r for p, r in zip(
                found["policy_text"], found["reference_text"], strict=True))}


def _kl_to_reference(models: Models, rollout: Rollout, config: PolicyTrainingConfig):
    import torch

    input_ids, attention = full_sequences(rollout)
    with torch.no_grad():
        logprobs = response_logprobs(policy_logits(models.policy, input_ids, attention), rollout,
                                     config.temperature)
        ref_logprobs = response_logprobs(models.reference_logits(input_ids, attention), rollout,
                                         config.temperature)
    return ((logprobs - ref_logprobs) * rollout.mask).sum(1)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def save_policy(policy, tokenizer, directory: Path, config: PolicyTrainingConfig) -> dict:
    tokenizer.padding_side = "right"  # as the model card's users will call it
    return save_model(policy, tokenizer, directory, merge_adapter=config.merge_adapter,
                      extra=config.as_dict())




class RewardModelFunction:
    """`(prompts, completions, **kwargs) -> rewards`, the reward callable TRL accepts."""

    def __init__(self, path: str):
        from .scoring import RewardScorer

        self.__name__ = "reward_model"  # TRL names the reward's metrics after it
        self.scorer = RewardScorer.load(path)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return self.scorer.score(list(zip(prompts, completions, strict=True)))
