"""gleamx: match-and-explain cross-view geo-localization with open multimodal LLMs."""

__version__ = "0.1.0"
