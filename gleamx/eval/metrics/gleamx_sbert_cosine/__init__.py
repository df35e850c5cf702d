"""Package marker so the module script ships in the wheel; evaluate loads gleamx_sbert_cosine.py itself."""
