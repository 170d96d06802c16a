from __future__ import annotations

import pytest

from controller.config.catalog import load_catalog
from controller.planner.capability import effective_dtype, effective_quantization, parse_capability
from tests.unit._support import make_profile

CATALOG = load_catalog()
BF16 = CATALOG.get("deepseek-1.5b").replace(dtype="bfloat16")


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "half"), ((6, 1), "half"), ((7, 0), "half")])
def test_bfloat16_becomes_half_before_ampere(capability, expected):
    assert effective_dtype(BF16, capability) == expected


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0), None])
def test_bfloat16_is_kept_on_ampere_and_when_unknown(capability):
    assert effective_dtype(BF16, capability) == "bfloat16"


@pytest.mark.parametrize("capability", [(7, 5), (8, 6)])
def test_other_dtypes_are_never_changed(capability):
    assert effective_dtype(CATALOG.get("deepseek-1.5b"), capability) == "half"


@pytest.mark.parametrize(
    ("name", "capability", "expected"),
    [
        ("llama3-8b-gptq", (8, 6), "gptq_marlin"),
        ("llama3-8b-gptq", (8, 0), "gptq_marlin"),
        ("llama3-8b-gptq", None, "gptq_marlin"),
        ("llama3-8b-gptq", (7, 5), "gptq"),
        ("llama3-8b-awq", (8, 6), "awq_marlin"),
        ("llama3-8b-awq", None, "awq_marlin"),
        ("llama3-8b-awq", (7, 5), "awq"),
        ("llama3-8b", (8, 6), None),
    ],
)
def test_quantization_kernel_follows_compute_capability(name, capability, expected):
    assert effective_quantization(CATALOG.get(name), capability) == expected


def test_marlin_in_the_catalog_falls_back_to_plain_kernel_before_ampere():
    marlin = CATALOG.get("llama3-8b-gptq").replace(quantization="gptq_marlin")
    assert effective_quantization(marlin, (7, 5)) == "gptq"
    assert effective_quantization(marlin, (8, 6)) == "gptq_marlin"


@pytest.mark.parametrize("capability", [None, (7, 5), (8, 6)])
def test_cpu_profile_keeps_its_quantization(capability):
    cpu = make_profile("cpu-gptq", accelerator="cpu", quantization="gptq", dtype="half")
    assert effective_quantization(cpu, capability) == "gptq"


@pytest.mark.parametrize(("text", "expected"), [("8.6", (8, 6)), (" 7.5\n", (7, 5)), ("9.0", (9, 0)), ("8", (8, 0))])
def test_parse_capability(text, expected):
    assert parse_capability(text) == expected
