"""Supervised fine-tuning of Qwen-VL-class models on GLEAM-X through TRL's SFTTrainer."""
