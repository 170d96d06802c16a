from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller.runtime.gpu import docker_has_nvidia_runtime, from_nvml, parse_nvidia_smi

MIB = 1024**2
# Recorded: nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap --format=csv,noheader,nounits
RTX_3060 = "0, NVIDIA GeForce RTX 3060, 12288, 11915, 8.6\n"
TESLA_T4 = "0, Tesla T4, 15360, 14930, 7.5\n"
A100_X2 = "0, NVIDIA A100-SXM4-80GB, 81920, 81037, 8.0\n1, NVIDIA A100-SXM4-80GB, 81920, 80514, 8.0\n"


def test_parse_rtx_3060():
    (gpu,) = parse_nvidia_smi(RTX_3060)
    assert (gpu.index, gpu.name, gpu.capability) == (0, "NVIDIA GeForce RTX 3060", (8, 6))
    assert gpu.total_gib == 12.0
    assert gpu.free_bytes == 11915 * MIB


def test_parse_tesla_t4():
    (gpu,) = parse_nvidia_smi(TESLA_T4)
    assert (gpu.name, gpu.total_gib, gpu.capability) == ("Tesla T4", 15.0, (7, 5))


def test_parse_two_a100s():
    gpus = parse_nvidia_smi(A100_X2)
    assert [g.index for g in gpus] == [0, 1]
    assert all(g.name == "NVIDIA A100-SXM4-80GB" and g.total_gib == 80.0 and g.capability == (8, 0) for g in gpus)
    assert gpus[1].free_bytes == 80514 * MIB


def test_parse_ignores_blank_and_malformed_lines():
    assert parse_nvidia_smi("") == []
    assert len(parse_nvidia_smi("\n" + RTX_3060 + "No devices were found\n")) == 1


class RecordedNvml:
    """Stands in for pynvml (libnvidia-ml cannot exist on this machine) with recorded values."""

    def __init__(self, devices, fail_on_memory_of=None):
        self.devices = devices
        self.fail_on_memory_of = fail_on_memory_of
        self.calls = []

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle]["name"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        if handle == self.fail_on_memory_of:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        d = self.devices[handle]
        return SimpleNamespace(total=d["total"], free=d["free"], used=d["total"] - d["free"])

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self.devices[handle]["cap"]


DEVICES = [
    {"name": b"NVIDIA GeForce RTX 3060", "total": 12884901888, "free": 12493651968, "cap": (8, 6)},
    {"name": "Tesla T4", "total": 16106127360, "free": 15655829504, "cap": (7, 5)},
]


def test_from_nvml_reads_names_memory_and_capability():
    nvml = RecordedNvml(DEVICES)
    gpus = from_nvml(nvml)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 3060", "Tesla T4"]  # bytes decoded, str kept
    assert [g.total_gib for g in gpus] == [12.0, 15.0]
    assert [g.capability for g in gpus] == [(8, 6), (7, 5)]
    assert gpus[0].free_bytes == 12493651968
    assert nvml.calls == ["init", "shutdown"]


def test_from_nvml_shuts_down_even_when_a_query_fails():
    nvml = RecordedNvml(DEVICES, fail_on_memory_of=1)
    with pytest.raises(RuntimeError, match="GPU_IS_LOST"):
        from_nvml(nvml)
    assert nvml.calls == ["init", "shutdown"]


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}}}, True),
        ({"Runtimes": {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}}}, False),
        ({"Runtimes": {"runc": {}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}, True),
        ({"Runtimes": {"runc": {}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "vendor.com/fpga=0"}]}, False),
        ({"Runtimes": None, "DiscoveredDevices": None}, False),
        ({}, False),
    ],
)
def test_docker_has_nvidia_runtime(info, expected):
    assert docker_has_nvidia_runtime(info) is expected
