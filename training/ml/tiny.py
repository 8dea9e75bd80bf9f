"""Tiny models built offline, for tests, demos and benchmarks on machines without a model hub.

build_tiny_models(directory) trains a byte-level BPE tokenizer (with a chat template) on
generated text and saves, next to it, a small Llama causal LM and a one-output sequence
classifier (a reward model) with `save_pretrained`, so they load back with
`from_pretrained(path)` like any Hugging Face model.
"""

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|end|>"]
WORDS = ("the a an is are was were be to of and in that have it for not on with he she they we "
         "you do at this but his by from say her or will my one all would there their what so "
         "up out if about who get which go me when make can like time no just him know take "
         "people into year your good some could them see other than then now look only come "
         "its over think also back after use two how our work first well way even new want "
         "because any these give day most us answer question python code function number list "
         "helpful harmless safe explain why because first second best worst rank prompt").split()


def _corpus(size: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(size):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":"]))
    lines.append("0123456789 ()[]{}<>=+-*/_#`'\"\\ , ; \n\t")
    return lines


def build_tiny_tokenizer(directory: Path, vocab_size: int = 450):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(directory)
    return wrapped


def build_tiny_models(directory: Path, seed: int = 0, vocab_size: int = 450) -> dict[str, Path]:
    """Save a tokenizer, a causal LM and a reward model under `directory`; return their paths."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    paths = {name: directory / name for name in ("policy", "reward")}
    tokenizer = build_tiny_tokenizer(paths["policy"], vocab_size)
    tokenizer.save_pretrained(paths["reward"])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(paths["policy"])
    config.num_labels = 1
    LlamaForSequenceClassification(config).save_pretrained(paths["reward"])
    return paths


def pretrain_tiny_policy(policy_dir: Path, steps: int = 150, seed: int = 0) -> Path:
    """Teach the tiny causal LM the generated corpus for a few hundred steps (seconds on a
    CPU), so it writes word-like text ending in EOS: a policy RL can improve, where a random
    initialisation samples uniform bytes. Saved in place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lines = [f"{line}{tokenizer.eos_token}" for line in _corpus(size=4000, seed=seed + 1)]
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(lines, 16), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(policy_dir)
    return policy_dir
