"""Where a site's files are: the project directory, its .env, the rendered compose folder and the
controller's state. Plain paths, so that every command (even `models`) can name them without
loading the settings model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR_NAME = ".controller"
METRICS_DIR_NAME = "metrics"
# Compose resolves a relative bind source from the compose file's folder (compose/), so the
# rendered file names the metrics folder without the site's absolute path.
METRICS_DIR_FROM_COMPOSE = f"../{STATE_DIR_NAME}/{METRICS_DIR_NAME}"


@dataclass(frozen=True)
class SiteConfig:
    root: Path
    env_file: Path

    @property
    def compose_dir(self) -> Path:
        return self.root / "compose"

    @property
    def compose_file(self) -> Path:
        return self.compose_dir / "docker-compose.yml"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def metrics_dir(self) -> Path:
        """Files for node-exporter's textfile collector (MONITORING=on): the KV-cache check."""
        return self.state_dir / METRICS_DIR_NAME
