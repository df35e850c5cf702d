"""Package marker so the module script ships in the wheel; evaluate loads gleamx_rouge_l.py itself."""
