"""The training code: plain Python on torch, transformers, trl and peft. No Django here."""
