"""Package marker so the module script ships in the wheel; evaluate loads gleamx_chrf.py itself."""
