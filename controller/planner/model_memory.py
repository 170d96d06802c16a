"""The model's own memory facts (pure): the bytes its weights take once loaded, the KV cache bytes
each token takes, and the per-GPU shape the engine arithmetic (controller.planner.engine) needs:
    KV bytes per token = 2 (K and V) x layers x KV heads x head dim x bytes of the KV dtype
"""

from __future__ import annotations

from controller.config.lora import lora_buffer_bytes
from controller.config.profile import DTYPE_BYTES, Profile
from controller.planner.engine import DEFAULT_INTERMEDIATE_RATIO, ModelShape

# Checkpoint sizes are quoted in decimal gigabytes (what Hugging Face shows).
GB = 1000**3
# Quantized checkpoints keep one fp16 scale and one packed zero point per group of weights.
SCALE_BITS = 16


def weight_bytes(profile: Profile) -> int:
    """Weights in bytes: quantized linear layers at their bits plus group scales and zero points;
    embeddings and lm_head stay in 16 bit."""
    arch = profile.architecture
    total = arch.params_billion * 1e9
    if arch.weight_bits >= 16:
        return int(total * DTYPE_BYTES.get(profile.dtype, 2) if arch.weight_bits == 16 else total * 4)
    embedding = arch.vocab_size * arch.hidden_size
    unquantized = embedding if arch.tied_embeddings else 2 * embedding
    linear = total - unquantized
    group = arch.quant_group_size or 128
    bits_per_weight = arch.weight_bits + (SCALE_BITS + arch.weight_bits) / group
    return int(unquantized * 2 + linear * bits_per_weight / 8)


def loaded_bytes(profile: Profile, weights_bytes_override: int | None = None) -> int:
    """What vLLM's model loading takes per GPU: the weights, plus the LoRA slots it allocates
    with the model when the profile serves adapters (controller.config.lora.lora_buffer_bytes)."""
    weights = weights_bytes_override or weight_bytes(profile)
    return (weights + lora_buffer_bytes(profile)) // profile.tensor_parallel_size


def kv_dtype_bytes(profile: Profile) -> int:
    if profile.kv_cache_dtype.startswith("fp8"):
        return 1
    if profile.dtype == "auto":
        # An "auto" dtype keeps the checkpoint's precision: 16 bit for these models.
        return 2
    return DTYPE_BYTES[profile.dtype]


def kv_bytes_per_token(profile: Profile) -> int:
    arch = profile.architecture
    kv_heads_per_gpu = max(1, arch.kv_heads // profile.tensor_parallel_size)
    return 2 * arch.layers * kv_heads_per_gpu * arch.head_dim * kv_dtype_bytes(profile)


def model_shape(profile: Profile) -> ModelShape:
    """Per-GPU facts for the engine model: tensor parallelism splits the MLP and the KV heads;
    activations run in the model dtype (16 bit for quantized checkpoints)."""
    arch = profile.architecture
    tp = profile.tensor_parallel_size
    intermediate = arch.intermediate_size or int(arch.hidden_size * DEFAULT_INTERMEDIATE_RATIO)
    return ModelShape(
        layers=arch.layers,
        hidden_size=arch.hidden_size,
        intermediate_size=max(1, intermediate // tp),
        vocab_size=arch.vocab_size,
        activation_bytes=4 if profile.dtype in ("float", "float32") else 2,
        kv_bytes_per_token=kv_bytes_per_token(profile),
    )
