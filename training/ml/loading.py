"""Load and save reward models: any Hugging Face name or local folder, full or LoRA adapter.

Weights are read from safetensors only (`use_safetensors=True`): a pickled checkpoint such as
pytorch_model.bin can run code as it loads, so a folder holding only one is refused with a
clear error instead of being unpickled. Our own training checkpoints (checkpoints.py) are read
with torch.load(weights_only=True). Models are saved as safetensors.
"""

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SEQ_CLS_HEADS = ["score", "classifier"]  # the new head must be trained and saved with the adapter


def device_for_training():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


class UnsafeModelFiles(ValueError):
    """A model folder whose weights are not in safetensors."""


def require_safetensors(name_or_path: str | Path) -> None:
    """Refuse a local model folder with no .safetensors weights; a Hub name is refused the
    same way by from_pretrained(use_safetensors=True)."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    only = f" (it has {', '.join(pickles)})" if pickles else ""
    raise UnsafeModelFiles(
        f"{folder} has no .safetensors weights{only}: pickled weights are never loaded, as "
        f"they can run code. Save the model with save_pretrained(safe_serialization=True)."
    )


def load_tokenizer(name_or_path: str):
    """The model's tokenizer, with a pad token (decoder reward models score the last non-pad)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_reward_model(name_or_path: str, *, tokenizer=None, load_in_4bit: bool = False,
                      trainable: bool = False, dtype=None):
    """Return a one-output sequence classifier from a name, a folder, or a saved adapter.

    A saved adapter loads on its base model (named in its adapter config) with the adapter
    applied; `trainable` keeps its LoRA weights trainable, else it is merged for speed.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    require_safetensors(name_or_path)
    kwargs = {"num_labels": 1, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if load_in_4bit:
        if not torch.cuda.is_available():
            raise RuntimeError("load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels)")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    if is_adapter(name_or_path):
        from peft import AutoPeftModelForSequenceClassification

        adapter_config = json.loads((Path(name_or_path) / ADAPTER_CONFIG).read_text())
        if adapter_config.get("base_model_name_or_path"):
            require_safetensors(adapter_config["base_model_name_or_path"])
        model = AutoPeftModelForSequenceClassification.from_pretrained(
            name_or_path, is_trainable=trainable, **kwargs)
        if not trainable:
            model = model.merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs)
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def add_lora(model, *, r: int, alpha: int, dropout: float, quantized: bool = False):
    """Wrap `model` with a LoRA adapter for sequence classification (head trained and saved)."""
    from peft import LoraConfig, TaskType, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules="all-linear", modules_to_save=_heads_of(model))
    return get_peft_model(model, config)


def _heads_of(model) -> list[str]:
    names = {name.split(".")[-1] for name, _ in model.named_modules()}
    return [head for head in SEQ_CLS_HEADS if head in names]


def save_model(model, tokenizer, directory: Path, *, merge_adapter: bool = False,
               extra: dict | None = None) -> dict[str, str]:
    """Save a reward model or a policy with save_pretrained (adapters as adapters); return
    the folders written, {"model": ..., "merged": ...}.

    With `merge_adapter`, the merged full model goes to `directory/merged` as well (merging
    changes `model`: save last). `extra` is written as training_config.json.
    """
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    written = {"model": str(directory)}
    if merge_adapter and is_adapter(directory):
        merged_dir = directory / "merged"
        model.merge_and_unload().save_pretrained(merged_dir, safe_serialization=True)
        tokenizer.save_pretrained(merged_dir)
        written["merged"] = str(merged_dir)
    if extra is not None:
        (directory / "training_config.json").write_text(json.dumps(extra, indent=2) + "\n")
    return written
