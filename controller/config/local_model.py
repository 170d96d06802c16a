"""A profile that serves a local model directory: checks and facts that read the directory itself
(the profile only holds its path)."""

from __future__ import annotations

from controller.config.profile import Profile
from controller.errors import CatalogError


def check_local_model(profile: Profile) -> None:
    """A profile that serves a local directory needs that directory before anything starts."""
    local = profile.local_path
    if local is not None and not local.is_dir():
        raise CatalogError(
            f"catalog {profile.source}: profile '{profile.name}': field 'model': "
            f"local model directory {local} does not exist",
            hint="download the weights there first, or use a Hugging Face id",
        )


def local_weights_bytes(profile: Profile) -> int | None:
    """For a local model directory, the size of its safetensors files: the weights as stored."""
    local = profile.local_path
    if local is None or not local.is_dir():
        return None
    total = sum(f.stat().st_size for f in local.glob("*.safetensors"))
    return total or None
