"""trae2api: an OpenAI-compatible gateway to your own Trae IDE account."""

__version__ = "0.1.0"
