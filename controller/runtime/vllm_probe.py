"""Phased waits with deadlines (tenacity) and the probes behind them, with fail-fast on vLLM errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.errors import NotReady, StartupFailed
from controller.phases import ENGINE_READY, MODEL_LISTED, VLLM_STARTED, WEIGHTS_LOAD
from controller.runtime import vllm_log as vllm_text
from controller.runtime.docker import Engine, docker_timestamp

if TYPE_CHECKING:
    from docker.models.containers import Container

# tenacity and the Docker SDK's errors are imported where they are used: only a wait or a probe of
# a running stack needs them, and importing this module should not cost their start time.

LOG_TAIL_LINES = 12

# Runs inside the vLLM container, so it works on an internal network and needs only python3,
# which both the upstream image and a local build have. The key comes through the exec
# environment, never the command line.
_PROBE = """
import os, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
key = os.environ.get("PROBE_KEY")
if key:
    req.add_header("Authorization", "Bearer " + key)
try:
    r = urllib.request.urlopen(req, timeout=5); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode()[:500])
except Exception as e:
    print(0); print(e)
"""


SIGKILL_EXIT = 128 + 9


def describe_exit(status: str, code: int | None, *, oom_killed: bool) -> tuple[str, str]:
    """(message, hint) for a vLLM container that ended before it was ready. A SIGKILL leaves
    nothing in vLLM's own log, so the message says who can send one."""
    if oom_killed:
        return (f"the vLLM container was killed for lack of memory (exit code {code}) before it was ready",
                "give it more memory or choose a smaller profile; `controller plan MODEL` shows the need")  # fmt: skip
    if code == SIGKILL_EXIT:
        what = "was killed (SIGKILL" + (")" if status in ("exited", "dead") else ") and Docker restarted it")
        return (f"the vLLM container {what} before it was ready",
                "its log cannot say why: something outside vLLM killed it (`docker kill`, or the kernel's "
                "OOM killer: see `dmesg`)")  # fmt: skip
    what = "stopped" if status in ("exited", "dead") else "crashed and Docker restarted it"
    return (f"the vLLM container {what} (exit code {code}) before it was ready",
            "read the log lines above, or `controller logs vllm`")  # fmt: skip


class VllmProbe:
    """Looks at the vLLM container of one compose project: its state, logs and HTTP API.

    Only log lines from the container's current start on count, so a fatal line from an earlier
    run of the same container does not fail this one; a restart during the wait counts as a crash.
    """

    def __init__(self, engine: Engine, project: str, api_key: str, *, port: int, service: str = "vllm"):
        self.engine = engine
        self.project = project
        self.api_key = api_key
        self.port = port
        self.service = service
        self.restarts_before: int | None = None

    def begin_attempt(self) -> None:
        """Call right before (re)starting vLLM; the restart count is taken at the first look after."""
        self.restarts_before = None

    @staticmethod
    def _since(container: Container) -> int:
        return int(docker_timestamp(container.attrs["State"]["StartedAt"]))

    def container(self) -> Container:
        import docker.errors

        try:
            container = self.engine.container(self.project, self.service)
        except docker.errors.APIError as exc:
            raise NotReady(f"Docker did not answer: {exc}") from None
        if container is None:
            raise NotReady("the vLLM container does not exist yet")
        return container

    def logs(self) -> str:
        import docker.errors

        container = self.container()
        try:
            return self.engine.logs_since(container, self._since(container))
        except docker.errors.APIError as exc:
            raise NotReady(f"the vLLM container's log cannot be read: {exc.explanation or exc}") from None

    def fail_fast(self, phase: str) -> str:
        """Raise StartupFailed when vLLM logged a fatal error, exited or restarted; else return the log."""
        import docker.errors

        container = self.container()
        try:
            container.reload()
            log = self.engine.logs_since(container, self._since(container))
        except docker.errors.NotFound:
            raise NotReady("the vLLM container is being replaced") from None
        except docker.errors.APIError as exc:  # 409: removed under us ("dead or marked for removal")
            raise NotReady(f"the vLLM container cannot be read: {exc.explanation or exc}") from None
        fatal = vllm_text.find_fatal(log)
        if fatal:
            raise StartupFailed(
                f"vLLM failed to start ({fatal.kind.replace('_', ' ')})",
                phase=phase,
                hint=fatal.hint,
                details=fatal.lines,
            )
        status = container.status
        code = container.attrs.get("State", {}).get("ExitCode")
        restarts = container.attrs.get("RestartCount", 0) or 0
        if self.restarts_before is None:
            self.restarts_before = restarts
        restarted = restarts > self.restarts_before
        if status in ("exited", "dead", "restarting") or restarted:
            oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
            message, hint = describe_exit(status, code, oom_killed=oom_killed)
            raise StartupFailed(message, phase=phase, hint=hint, details=log.strip().splitlines()[-LOG_TAIL_LINES:])
        return log

    def http(self, path: str, *, with_key: bool = False) -> tuple[int, str]:
        import docker.errors

        container = self.container()
        env = {"PROBE_KEY": self.api_key} if with_key else {}
        try:
            result = container.exec_run(
                ["python3", "-c", _PROBE, f"http://127.0.0.1:{self.port}{path}"], environment=env
            )
        except docker.errors.APIError as exc:
            # 409 while the container restarts, 404 once it is replaced.
            raise NotReady(f"cannot reach vLLM inside its container: {exc.explanation or exc}") from None
        text = result.output.decode("utf-8", errors="replace")
        status, _, body = text.partition("\n")
        try:
            return int(status.strip() or 0), body
        except ValueError:
            return 0, text

    # Each check below returns when its phase is done, or raises NotReady / StartupFailed.

    def check_running(self) -> Container:
        container = self.container()
        # The phase it runs in: a failure here must count as vLLM's, so that vLLM is stopped.
        self.fail_fast(VLLM_STARTED.name)
        if container.status != "running":
            raise NotReady(f"the vLLM container is {container.status}")
        return container

    def check_loaded(self, on_progress: Callable[[str], None] | None = None) -> str:
        log = self.fail_fast(WEIGHTS_LOAD.name)
        if on_progress and (line := vllm_text.last_progress(log)):
            on_progress(line)
        if not vllm_text.server_started(log):
            raise NotReady("vLLM is still loading")
        return log

    def check_healthy(self) -> None:
        self.fail_fast(ENGINE_READY.name)
        status, body = self.http("/health")
        if status != 200:
            raise NotReady(f"vLLM /health answered {status or 'nothing'}")

    def check_model_listed(self, served_name: str) -> int | None:
        self.fail_fast(MODEL_LISTED.name)
        status, body = self.http("/v1/models", with_key=True)
        if status == 401:
            raise StartupFailed(
                "vLLM refused the API key from .env",
                phase=MODEL_LISTED.name,
                hint="VLLM_API_KEY in .env must match the running container: run `controller up` again",
            )
        if status != 200:
            raise NotReady(f"vLLM /v1/models answered {status or 'nothing'}")
        for item in json.loads(body).get("data", []):
            if item.get("id") == served_name:
                return item.get("max_model_len")
        raise NotReady(f"vLLM does not list '{served_name}' yet")
