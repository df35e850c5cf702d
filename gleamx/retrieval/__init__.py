"""GLEAM-C: one image encoder for every view; proposes top-k satellite candidates for the MLLM to verify."""
