"""The running stack: the target protocol, Docker (the one subprocess seam), the vLLM probe and
logs, Open WebUI's API, GPUs, the HF cache and the host."""
