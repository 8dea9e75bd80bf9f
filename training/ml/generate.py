"""A policy writes K completions for each prompt: the next round for labelers to rank.

generate_completions(config, reporter) writes the project's import format (one prompt per
line, every completion with its model and sampling parameters), so the new round goes in
through the same validated, all-or-nothing import as any file.

What a model writes never fails the job: each completion is cleaned (clean_text), an empty
one or a repeat of another completion of the same prompt is sampled again, up to
`max_resamples` times, and a prompt still short of K distinct completions is left out of the
file and recorded, with its reason, in `<output stem>.skipped.jsonl` and the job's result.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, JsonConfig
from .loading import load_tokenizer
from .policy import encode_prompt, left_pad, read_prompts, use_threads
from .text import clean_text, is_blank

MAX_REPORTED_SKIPS = 20  # skipped prompts listed in the result; all of them are in the file
MAX_MODEL_NAME = 200  # the import refuses longer model names
MAX_LINE_BYTES = 8 * 1024 * 1024  # the import's default line limit (IMPORT_MAX_LINE_BYTES)
PREVIEW_CHARS = 200


@dataclass(frozen=True)
class GenerationConfig(JsonConfig):
    policy: str  # a name, a folder, or a saved LoRA adapter
    prompts_file: str  # JSONL {"prompt": text or messages}
    output_file: str
    k: int = 4
    max_new_tokens: int = 128
    # At least this many tokens before EOS may end a completion: a policy that learned to
    # stop at once would otherwise write nothing but empty completions.
    min_new_tokens: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 16  # prompts per generate() call
    max_prompt_length: int = 1024
    model_name: str = ""  # stored on every completion (default: the policy's path)
    threads: int | None = None
    max_resamples: int = 3  # extra draws for a prompt's empty or repeated completions
    # Other models may write some of each prompt's K completions, so that labelers rank the
    # new policy against them (human win rates): the previous round's policy and a reference.
    previous_policy: str = ""
    previous_name: str = ""
    previous_count: int = 0
    reference_policy: str = ""
    reference_name: str = ""
    reference_count: int = 0

    def __post_init__(self):
        checks = [(2 <= self.k <= 9, "k: must be between 2 and 9"),
                  (1 <= self.max_new_tokens <= 8192, "max_new_tokens: must be 1 to 8192"),
                  (0 <= self.min_new_tokens <= self.max_new_tokens,
                   "min_new_tokens: must be 0 to max_new_tokens"),
                  (0 < self.temperature <= 10, "temperature: must be above 0"),
                  (0 < self.top_p <= 1, "top_p: must be above 0 and at most 1"),
                  (1 <= self.batch_size <= 1024, "batch_size: must be 1 to 1024"),
                  (type(self.max_resamples) is int and 0 <= self.max_resamples <= 20,
                   "max_resamples: must be a whole number from 0 to 20"),
                  (type(self.previous_count) is int and 0 <= self.previous_count <= 8,
                   "previous_count: must be a whole number from 0 to 8"),
                  (type(self.reference_count) is int and 0 <= self.reference_count <= 8,
                   "reference_count: must be a whole number from 0 to 8")]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    def sources(self) -> list[tuple[str, str, str, int]]:
        """(slot, policy, model name, completions per prompt) for each model that writes some:
        the policy ("base") writes what the others leave of K, and at least one."""
        others = [(self.previous_policy, self.previous_name, self.previous_count, "previous"),
                  (self.reference_policy, self.reference_name, self.reference_count,
                   "reference")]
        for policy, _, count, slot in others:
            if count and not policy:
                raise ConfigError(f"{slot}_count: {count} completions need a {slot} policy")
        own = policy_share(self.k, self.previous_count + self.reference_count)
        return [("base", self.policy, self.model_name, own)] + [
            (slot, policy, name, count) for policy, name, count, slot in others if count]

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed}


def policy_share(k: int, others: int) -> int:
    """How many of K the policy writes when other models write `others`: at least one.

    >>> policy_share(4, 2)
    2
    """
    if k - others < 1:
        raise ConfigError(f"previous_count + reference_count: {others} leaves the policy none "
                          f"of the {k} completions per prompt")
    return k - others


# --- choosing completions (pure: the sampler is passed in) ------------------------------

Sampler = Callable[[list, int], list[list[str]]]  # (prompts, n) -> n decoded texts per prompt


@dataclass
class Drawn:
    """One prompt's distinct, cleaned completions so far, and what was turned away."""

    texts: list[str] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)  # the model of each text
    empty: int = 0
    duplicates: int = 0
    cleaned: int = 0  # kept texts that clean_text changed
    short_writer: str = ""  # the model that could not write its share, if one could not

    def take(self, samples: list[str], k: int, writer: str = "") -> None:
        for raw in samples:
            if len(self.texts) == k:
                return
            text = clean_text(raw)
            if is_blank(text):
                self.empty += 1
            elif text in self.texts:
                self.duplicates += 1
            else:
                self.texts.append(text)
                self.writers.append(writer)
                self.cleaned += text != raw

    def shortfall_reason(self, k: int, max_resamples: int, name_writer: bool = False) -> str:
        by = f" ({self.short_writer} fell short)" if name_writer and self.short_writer else ""
        return (f"{len(self.texts)} of {k} distinct non-empty completions after "
                f"{max_resamples} re-samples ({self.empty} empty, {self.duplicates} "
                f"duplicates){by}")


def draw_completions(prompts: list, sample: Sampler, k: int, max_resamples: int,
                     drawn: list[Drawn] | None = None,
                     writer: str = "") -> tuple[list[Drawn], int]:
    """Sample until each prompt has K completions, then sample again for the empty and
    repeated ones, at most `max_resamples` more times; return each prompt's Drawn and how
    many samples were drawn again. A prompt whose Drawn has fewer than K texts is to be
    skipped. `drawn` continues what other models wrote (a repeat of theirs is a repeat too);
    `writer` names the model that writes these.

    >>> answers = iter([[["a", ""], ["b", "x"]], [["a"]]])  # then p's "a" again: a repeat
    >>> drawn, again = draw_completions(["p", "q"], lambda ps, n: next(answers), 2, 1)
    >>> [d.texts for d in drawn], again
    ([['a'], ['b', 'x']], 1)
    """
    drawn = drawn if drawn is not None else [Drawn() for _ in prompts]
    resampled = 0
    for attempt in range(max_resamples + 1):
        short = [i for i, d in enumerate(drawn) if len(d.texts) < k]
        if not short:
            break
        missing = [k - len(drawn[i].texts) for i in short]
        if attempt:
            resampled += sum(missing)
        for i, samples in zip(short, sample([prompts[i] for i in short], max(missing)),
                              strict=True):
            drawn[i].take(samples, k, writer)
    for each in drawn:
        if len(each.texts) < k and not each.short_writer:
            each.short_writer = writer
    return drawn, resampled


def prompt_preview(prompt) -> str:
    """The prompt's text (a chat's last message), cut to PREVIEW_CHARS, for a report.

    >>> prompt_preview([{"role": "user", "content": "Hi\\x00"}])
    'Hi'
    """
    text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    text = clean_text(text)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 3] + "..."


def _model_label(name: str) -> str:
    return name if len(name) <= MAX_MODEL_NAME else "..." + name[-(MAX_MODEL_NAME - 3):]


# --- the job ----------------------------------------------------------------------------


def load_policy(path: str):
    from transformers import AutoModelForCausalLM

    from .loading import is_adapter

    if is_adapter(path):
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(path).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)


def policy_sampler(config: GenerationConfig, policy: str) -> Sampler:
    """Load the policy and return a function that samples n decoded texts per prompt."""
    import torch

    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    model = load_policy(policy).to(device).eval()
    use_threads(config, model)  # one thread for a tiny model, as in training

    def sample(prompts: list, n: int) -> list[list[str]]:
        ids, mask = left_pad([encode_prompt(tokenizer, p, config.max_prompt_length)
                              for p in prompts], tokenizer.pad_token_id)
        with torch.no_grad():
            output = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                temperature=config.temperature, top_p=config.top_p, top_k=0,
                max_new_tokens=config.max_new_tokens, num_return_sequences=n,
                min_new_tokens=config.min_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(output[:, ids.shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    return sample


def generate_completions(config: GenerationConfig, reporter, sample: Sampler | None = None,
                         samplers: dict[str, Sampler] | None = None) -> dict:
    """Sample K completions per prompt in batches, each source model its share (the policy,
    then the previous policy and the reference, one model in memory at a time); write them
    as import lines, every completion with the model that wrote it.

    Return counts: `written` (= `prompts`) prompts with `completions` completions,
    `resampled` samples drawn again, `cleaned` completions whose text was cleaned, and
    `skipped` prompts, the first MAX_REPORTED_SKIPS of them in `skipped_prompts` and all in
    `skipped_file` (JSONL: {number, reason, prompt}, `number` counting prompts from 1);
    `sources`: each model's name and its completions per prompt. `sample` (every model) or
    `samplers` (by policy path) replace the models (a seam for tests).
    """
    from .progress import Cancelled

    sources = [(slot, policy, _model_label(name or policy), count)
               for slot, policy, name, count in config.sources()]
    prompts = read_prompts(config.prompts_file)
    drawn = [Drawn() for _ in prompts]
    batches = range(0, len(prompts), config.batch_size)
    total, step, written_before, resampled = len(batches) * len(sources), 0, 0, 0
    for _, policy, name, count in sources:
        sampler = (samplers or {}).get(policy) or sample or policy_sampler(config, policy)
        for first in batches:
            # Only prompts that every model before this one filled: the rest are skipped.
            ready = [i for i in range(first, min(first + config.batch_size, len(prompts)))
                     if len(drawn[i].texts) == written_before]
            if ready:
                resampled += draw_completions(
                    [prompts[i] for i in ready], sampler, written_before + count,
                    config.max_resamples, drawn=[drawn[i] for i in ready], writer=name)[1]
            step += 1
            done = first + config.batch_size
            short = sum(len(d.texts) < written_before + count for d in drawn[:done])
            if not reporter.step(step, total, {"prompts": min(done, len(prompts)) - short,
                                               "skipped": short}):
                raise Cancelled(f"stopped at {name}, after {min(done, len(prompts))} of "
                                f"{len(prompts)} prompts")
        written_before += count
        del sampler  # the next model loads in its place
    counts = _write(config, prompts, drawn)
    return {"prompts": counts["written"], "completions": counts["written"] * config.k,
            "resampled": resampled, **counts,
            "sources": [{"slot": slot, "model": name, "count": count}
                        for slot, _, name, count in sources],
            "output_file": config.output_file}


def _write(config: GenerationConfig, prompts: list, drawn: list[Drawn]) -> dict:
    """The import file, and the skipped prompts beside it with their reasons."""
    output = Path(config.output_file)
    skipped_path = output.with_name(f"{output.stem}.skipped.jsonl")
    counts = {"written": 0, "cleaned": 0, "skipped": 0}
    reported: list[dict] = []
    with output.open("w", encoding="utf-8") as out, \
            skipped_path.open("w", encoding="utf-8") as skipped_out:
        for number, (prompt, chosen) in enumerate(zip(prompts, drawn, strict=True), 1):
            line, reason = _import_line(prompt, chosen, config)
            if reason:
                counts["skipped"] += 1
                skip = {"number": number, "reason": reason}
                skipped_out.write(json.dumps({**skip, "prompt": prompt}) + "\n")
                if len(reported) < MAX_REPORTED_SKIPS:
                    reported.append({**skip, "prompt": prompt_preview(prompt)})
            else:
                out.write(line)
                counts["written"] += 1
                counts["cleaned"] += chosen.cleaned
    if not counts["skipped"]:
        skipped_path.unlink()
    return {**counts, "skipped_prompts": reported,
            "skipped_file": str(skipped_path) if counts["skipped"] else ""}


def _import_line(prompt, chosen: Drawn, config: GenerationConfig) -> tuple[str, str]:
    """The prompt's import line, or "" and why it cannot be written."""
    if len(chosen.texts) < config.k:
        several_writers = bool(config.previous_count or config.reference_count)
        return "", chosen.shortfall_reason(config.k, config.max_resamples,
                                           name_writer=several_writers)
    key = "messages" if isinstance(prompt, list) else "prompt"
    completions = [{"text": text, "model": writer, "params": config.sampling()}
                   for text, writer in zip(chosen.texts, chosen.writers, strict=True)]
    line = json.dumps({key: prompt, "completions": completions}) + "\n"
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        return "", f"its line is over the import's limit of {MAX_LINE_BYTES:,} bytes"
    return line, ""
