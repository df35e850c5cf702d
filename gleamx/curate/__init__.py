"""Build GLEAM-X from real cross-view data: image pairs from a retrieval layout, bilingual explanations from an
OpenAI-compatible MLLM, and a human-revision round trip (review in the browser, export, import)."""
