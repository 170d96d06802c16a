"""The vLLM probe when Docker removes the container under it: a wait goes on (NotReady) until its
phase deadline, instead of an "internal error" (seen when a container was removed mid-`up`)."""

from __future__ import annotations

import docker.errors
import pytest

from controller.errors import NotReady
from controller.runtime.vllm_probe import VllmProbe

REMOVED = docker.errors.APIError(
    "409 Client Error: Conflict", explanation="can not get logs from container which is dead or marked for removal"
)


class _Container:
    attrs = {"State": {"StartedAt": "2026-12-03T09:00:00.000000000Z"}}

    def reload(self) -> None:
        pass


class _RemovedUnderUs:
    def container(self, project: str, service: str) -> _Container:
        return _Container()

    def logs_since(self, container, since: int) -> str:
        raise REMOVED


@pytest.mark.parametrize("look", ["fail_fast", "logs"])
def test_a_container_removed_under_the_probe_is_not_ready_not_a_crash(look):
    probe = VllmProbe(_RemovedUnderUs(), "p", "key", port=8000)
    call = (lambda: probe.fail_fast("weights load")) if look == "fail_fast" else probe.logs
    with pytest.raises(NotReady, match="dead or marked for removal"):
        call()
