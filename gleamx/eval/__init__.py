"""GLEAM-X evaluation: generation, verdict metrics, reports."""
