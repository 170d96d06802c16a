"""LoRA adapters of a profile: their PEFT configs checked against the profile before anything
starts, where vLLM sees them, and the memory vLLM reserves for them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from controller.config.profile import DTYPE_BYTES, LORA_MOUNT, VLLM_LORA_RANKS, Profile
from controller.config.profile_fields import is_local
from controller.errors import CatalogError


def local_adapters(profile: Profile) -> dict[str, Path]:
    """The adapters that are host directories, by name."""
    return {name: Path(ref).expanduser() for name, ref in profile.lora_adapters.items() if is_local(ref)}


def container_path(profile: Profile, name: str) -> str:
    """Where vLLM reads adapter `name`: its mount for a local directory, else its HF id."""
    return str(PurePosixPath(LORA_MOUNT) / name) if name in local_adapters(profile) else profile.lora_adapters[name]


def _same_model(declared: str, profile: Profile) -> bool:
    """An adapter's base matches when it names the profile's model: the same HF id or path, or the
    same last path part (trained on `org/Model`, served from a local copy `/models/Model`)."""
    wanted = {profile.model.rstrip("/"), PurePosixPath(profile.model.rstrip("/")).name}
    return declared.rstrip("/") in wanted or PurePosixPath(declared.rstrip("/")).name in wanted


def check_adapters(profile: Profile) -> Profile:
    """Read each local adapter's config: its base model must be the profile's and its rank within
    --max-lora-rank. Returns the profile with max_lora_rank set (derived when the catalog left it
    unset). Raises CatalogError naming the profile and the adapter; nothing is started before."""
    if not profile.lora_adapters:
        return profile
    from controller.config.peft_adapter import read_adapter_config

    ranks = {}
    for name, directory in local_adapters(profile).items():
        config = read_adapter_config(profile, name, directory)
        where = f"catalog {profile.source}: profile '{profile.name}': adapter '{name}'"
        if config.base_model_name_or_path and not _same_model(config.base_model_name_or_path, profile):
            raise CatalogError(
                f"{where}: trained on '{config.base_model_name_or_path}', but the profile serves '{profile.model}'",
                hint="an adapter only works on the base model it was trained on; use a profile of that model",
            )
        if profile.max_lora_rank is not None and config.r > profile.max_lora_rank:
            raise CatalogError(
                f"{where}: rank {config.r} is above the profile's max_lora_rank {profile.max_lora_rank}",
                hint=f"raise max_lora_rank to at least {config.r}, or leave it unset to derive it",
            )
        if config.r > VLLM_LORA_RANKS[-1]:
            raise CatalogError(f"{where}: rank {config.r} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")
        ranks[name] = config.r
    if profile.max_lora_rank is not None:
        return profile
    rank = min(r for r in VLLM_LORA_RANKS if r >= max(ranks.values()))
    return profile.replace(max_lora_rank=rank)


def max_loras(profile: Profile) -> int:
    return profile.max_loras or len(profile.lora_adapters)


def lora_buffer_bytes(profile: Profile) -> int:
    """The LoRA weights vLLM allocates at model load (vLLM 0.32 lora/layers/base_linear.py
    create_lora_weights): for every adapted linear layer, `max_loras` slots of A (rank x input)
    and B (output x rank) in the model dtype, whatever the adapters' own ranks. Without
    --lora-target-modules a Llama-style decoder adapts all four per layer: qkv_proj (q, k and v
    slices), o_proj, gate_up_proj (two slices) and down_proj; summed over their slices,
    in + out = 7 hidden + 2 (heads + KV heads) head_dim + 3 intermediate."""
    if not profile.lora_adapters:
        return 0
    arch = profile.architecture
    intermediate = arch.intermediate_size or 4 * arch.hidden_size
    per_layer = 7 * arch.hidden_size + 2 * (arch.attention_heads + arch.kv_heads) * arch.head_dim + 3 * intermediate
    rank = profile.max_lora_rank or 16  # vLLM's default --max-lora-rank
    width = 4 if profile.dtype in ("float", "float32") else DTYPE_BYTES.get(profile.dtype, 2)
    return max_loras(profile) * rank * arch.layers * per_layer * width
