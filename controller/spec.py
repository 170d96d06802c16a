"""The serving spec's fixed parts: ports, URLs, labels and service names, defined once.

Renderers (Compose today, Kubernetes later) and probes read these; nothing else spells them.
"""

from __future__ import annotations

VLLM_PORT = 8000
WEBUI_PORT = 8080
# How Open WebUI reaches vLLM inside the deployment (no trailing slash: Open WebUI appends paths).
VLLM_BASE_URL = f"http://vllm:{VLLM_PORT}/v1"
HEALTH_PATH = "/health"
SERVICES = ("vllm", "webui")
PROFILE_LABEL = "io.llmstack.profile"
SERVED_NAME_LABEL = "io.llmstack.served-model-name"
