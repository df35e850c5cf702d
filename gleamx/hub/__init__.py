"""Model cards, uploads and adapter merging through huggingface_hub and PEFT."""
