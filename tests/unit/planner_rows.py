"""The public vLLM start-up logs (tests/unit/data/vllm-startup-logs.csv) as planner inputs and the
KV capacity vLLM logged. Shared by the accuracy test and benchmarks/bench_planner.py."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from controller.config.catalog import load_catalog
from controller.planner.engine import GPU_BLOCK_TOKENS
from controller.planner.fit import plan
from controller.planner.vllm_versions import EngineSettings

DATA = Path(__file__).parent / "data" / "vllm-startup-logs.csv"
CATALOG = Path(__file__).parents[1] / "catalog" / "planner.yaml"
# Compute capability by card, where the engine depends on it (0.8-0.9 fall back to V0 below 8.0).
CAPABILITY = {"T4": (7, 5), "RTX 3060": (8, 6), "RTX 3090": (8, 6), "A100": (8, 0), "L40S": (8, 9), "H100": (9, 0)}


@dataclass(frozen=True)
class Row:
    id: str
    profile: str
    gpu: str
    gpu_gib: float
    version: str
    utilization: float
    max_model_len: int
    max_num_batched_tokens: int
    logged_tokens: int
    logged_from: str  # which column the logged figure comes from
    planned_tokens: int

    @property
    def error(self) -> float:
        return (self.planned_tokens - self.logged_tokens) / self.logged_tokens


def _first_int(text: str) -> int:
    return int(re.search(r"\d+", text)[0])


def _version(text: str) -> str:
    return re.search(r"\d+\.\d+(?:\.\d+)?", text)[0]


def _logged(raw: dict) -> tuple[int, str]:
    """logged_kv_tokens where vLLM logged it (V1); V0 logged '# GPU blocks: N', N x 16 tokens."""
    if raw["logged_kv_tokens"]:
        return int(raw["logged_kv_tokens"]), "logged_kv_tokens"
    if raw["logged_gpu_blocks"]:
        return int(raw["logged_gpu_blocks"]) * GPU_BLOCK_TOKENS, "logged_gpu_blocks x 16"
    raise ValueError(f"row {raw['id']}: no KV figure")


def rows() -> list[Row]:
    catalog = load_catalog(CATALOG)
    result = []
    with DATA.open(encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            profile = catalog.get(raw["planner_profile"])
            gpu_gib = int(raw["planner_gpu_mib"]) / 1024
            capability = next((cap for name, cap in CAPABILITY.items() if name in raw["gpu"]), None)
            length = int(raw["max_model_len"])
            settings = EngineSettings(
                max_model_len=length,
                gpu_memory_utilization=float(raw["gpu_memory_utilization"]),
                # The batch those servers profiled (logged or inferred in the CSV); max_num_seqs was
                # not set, so vLLM's default for the version applies.
                max_num_batched_tokens=_first_int(raw["max_num_batched_tokens"]),
                enforce_eager="enforce-eager" in raw["source_note"],
            )
            result_plan = plan(
                profile.replace(max_model_len=length),
                gpu_memory_gib=gpu_gib,
                vllm_version=_version(raw["vllm_version"]),
                capability=capability,
                gpu_name=raw["gpu"],
                engine_settings=settings,
            )
            logged, column = _logged(raw)
            result.append(
                Row(
                    id=raw["id"],
                    profile=profile.name,
                    gpu=raw["gpu"],
                    gpu_gib=gpu_gib,
                    version=_version(raw["vllm_version"]),
                    utilization=settings.gpu_memory_utilization,
                    max_model_len=length,
                    max_num_batched_tokens=settings.max_num_batched_tokens,
                    logged_tokens=logged,
                    logged_from=column,
                    planned_tokens=result_plan.kv_cache_tokens,
                )
            )
    return result
