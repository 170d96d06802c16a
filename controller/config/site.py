"""Where a site's files are: the project directory, its .env, the rendered compose folder and the
controller's state. Plain paths, so that every command (even `models`) can name them without
loading the settings model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        return self.root / ".controller"
