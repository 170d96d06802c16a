"""Blue-green's two questions before anything starts: does the new model fit beside the old one
(the `auto` decision, with its reason), and what the compose file says while both run."""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.profile import Profile
from controller.deploy.spec import SLOTS
from controller.errors import PreflightError, RenderError
from controller.planner.engine import GIB
from controller.planner.fit import plan
from controller.planner.model_memory import weight_bytes
from controller.yaml_in import load_yaml

STRATEGIES = ("auto", "blue-green", "recreate")
# Python, torch and vLLM's own buffers in one CPU instance, beyond weights and KV space (measured:
# the tiny model with 1 GiB of KV space uses 2.3 GiB).
CPU_INSTANCE_OVERHEAD_GIB = 1.5
# GPU: what the old instance holds beyond its --gpu-memory-utilization share (CUDA context).
GPU_MARGIN_FRACTION = 0.05
# The new instance must serve at least this many full-length sequences at once.
MIN_CONCURRENCY = 4.0


@dataclass(frozen=True)
class Decision:
    strategy: str
    reason: str
    gpu_memory_utilization: float | None = None  # the new instance's, when less than its profile's
    capacity: str | None = None


def _cpu_gib(profile: Profile) -> float:
    return weight_bytes(profile) / GIB + profile.cpu_kv_cache_space_gib + CPU_INSTANCE_OVERHEAD_GIB


def pair_decision(new: Profile, old: Profile | None, *, host_memory_bytes: int | None,
                  gpu_memory_gib: float | None, reserve_gib: float) -> Decision:  # fmt: skip
    """Whether the new instance fits beside the old one, and why (the planner's numbers)."""
    if old is None:
        return Decision("recreate", "the running model's profile is not in the catalog, so its memory is unknown")
    if new.served_model_name == old.served_model_name:
        # Open WebUI routes a model name to the first connection that lists it, so it could not
        # tell the two instances apart.
        return Decision("recreate", f"both instances would serve the model name '{new.served_model_name}'")
    if new.accelerator != old.accelerator:
        return Decision("recreate", f"'{old.name}' runs on {old.accelerator}, '{new.name}' on {new.accelerator}")
    if new.accelerator == "cpu":
        if not host_memory_bytes:
            return Decision("recreate", "Docker did not report the host's memory")
        need = _cpu_gib(old) + _cpu_gib(new) + reserve_gib
        have = host_memory_bytes / GIB
        verdict = "fit" if need <= have else "do not fit"
        reason = (f"both instances {verdict}: {need:.1f} GiB needed (weights + KV space + "
                  f"{CPU_INSTANCE_OVERHEAD_GIB:g} GiB each, {reserve_gib:g} GiB reserve), Docker reports "
                  f"{have:.1f} GiB")  # fmt: skip
        return Decision("blue-green" if need <= have else "recreate", reason)
    if not gpu_memory_gib:
        return Decision("recreate", "the GPU's memory is unknown (set GPU_MEMORY_GIB in .env)")
    room = round(1.0 - old.gpu_memory_utilization - GPU_MARGIN_FRACTION, 3)
    if room <= 0.05:
        held = f"{old.gpu_memory_utilization:.0%}"
        return Decision("recreate", f"'{old.name}' holds {held} of the GPU; no room beside it")
    fit = plan(new, gpu_memory_gib=gpu_memory_gib, gpu_memory_utilization=min(room, new.gpu_memory_utilization))
    sequences = f"{fit.max_concurrency:.1f} full-length sequences"
    if not fit.fits or fit.max_concurrency < MIN_CONCURRENCY:
        why = f"beside '{old.name}' only {room:.0%} of the GPU is left: '{new.name}' would serve {sequences}"
        return Decision("recreate", f"{why}, fewer than {MIN_CONCURRENCY:g}")
    if room >= new.gpu_memory_utilization:
        return Decision("blue-green", f"fits beside '{old.name}' with its full GPU share ({sequences})")
    capacity = (
        f"'{new.name}' runs with --gpu-memory-utilization {room:g} instead of {new.gpu_memory_utilization:g} "
        f"({sequences}); `controller switch {new.name} --strategy recreate` restores full capacity"
    )
    return Decision("blue-green", f"fits beside '{old.name}' in {room:.0%} of the GPU ({sequences})", room, capacity)


def decide(requested: str, new: Profile, old: Profile | None, **facts) -> Decision:
    """The strategy for `requested` (auto, blue-green, recreate); blue-green that does not fit is refused."""
    if requested == "recreate":
        return Decision("recreate", "requested (--strategy recreate)")
    decision = pair_decision(new, old, **facts)
    if requested == "blue-green" and decision.strategy != "blue-green":
        raise PreflightError(
            f"a blue-green switch runs both models side by side, and {decision.reason}",
            hint="use `--strategy recreate` (an outage of one model load), or free memory; nothing was changed",
        )
    return decision


def vllm_service_of(parsed: dict) -> str:
    # Only the slots: Open WebUI and the monitoring services (MONITORING=on) sit beside it.
    names = [name for name in parsed.get("services", {}) if name in SLOTS]
    if len(names) != 1:
        raise RenderError(f"expected one vLLM service in a single-instance compose file, found {names}")
    return names[0]


def pair_text(new_text: str, old_text: str) -> str:
    """The compose file while both instances run: the new file with the old vLLM service block
    (from the file it was started with, byte for byte, so Compose leaves it as it is) added."""
    old, new = load_yaml(old_text, "the running compose file", RenderError), load_yaml(new_text, "", RenderError)
    old_service, new_service = vllm_service_of(old), vllm_service_of(new)
    if old_service == new_service:
        raise RenderError(f"both instances would be service '{old_service}'")
    start, end = old_text.index("\nservices:\n") + len("\nservices:\n"), old_text.index("\n  webui:\n")
    block = old_text[start:end].rstrip("\n") + "\n\n"
    at = new_text.index("\n  webui:\n") + 1
    text = new_text[:at] + block + new_text[at:]
    parsed = load_yaml(text, "the blue-green compose file", RenderError)
    wanted = {**new, "services": {**new["services"], old_service: old["services"][old_service]}}
    if parsed != wanted:
        raise RenderError("the blue-green compose file does not combine the two instances exactly; nothing was written")
    return text
