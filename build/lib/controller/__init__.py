"""Controller for a private LLM chat stack: vLLM behind Open WebUI, run by Docker Compose."""

__version__ = "0.1.0"
