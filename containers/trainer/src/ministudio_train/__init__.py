"""Mini Studio's trainer: LoRA SFT of a base model on a chat JSONL, reporting through files under one output prefix."""
