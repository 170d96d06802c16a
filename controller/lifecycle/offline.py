"""OFFLINE=true: what must already be on this machine before `up` or `switch` starts anything.

Pure: the caller says which images the engine lacks; the HF cache is read from disk.
"""

from __future__ import annotations

from controller.config.profile import Profile
from controller.config.settings import Settings
from controller.errors import PreflightError
from controller.runtime import hf_cache

BUNDLE_HINT = (
    "on a connected machine run `controller bundle create {profile} -o BUNDLE`, carry BUNDLE here and run "
    "`controller bundle load BUNDLE`"
)


def check_offline_ready(profile: Profile, settings: Settings, missing_images: list[str]) -> None:
    """Raise PreflightError naming the first missing image or model and the bundle command that brings it."""
    hint = BUNDLE_HINT.format(profile=profile.name)
    if missing_images:
        raise PreflightError(
            f"OFFLINE=true and image {', '.join(missing_images)} is not on this machine; offline mode never pulls",
            hint=hint,
        )
    if profile.local_path is not None:
        return  # a local directory: check_local_model already requires it
    if hf_cache.find_snapshot(settings.hf_cache_path, profile.model) is None:
        where = hf_cache.repo_dir(settings.hf_cache_path, profile.model)
        raise PreflightError(
            f"OFFLINE=true and model {profile.model} (profile '{profile.name}') is not in the Hugging Face cache "
            f"({where} has no refs/main with a snapshot holding config.json); offline mode never downloads",
            hint=hint,
        )
