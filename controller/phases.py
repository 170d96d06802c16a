"""The phases of `up`, `switch` and rollback as data: name, default deadline, what they wait on,
and the one runner that times, reports and waits on them.

Every phase name is spelled here once. Failing fast in a phase whose subject is vLLM stops vLLM,
so a crash-looping container never keeps burning CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from controller.errors import NotReady, SettingsError, StartupFailed

T = TypeVar("T")
POLL_INTERVAL_S = 0.5
# Longest deadline accepted: a first download of a large model can take hours, not days.
MAX_DEADLINE_S = 24 * 3600.0


@dataclass(frozen=True)
class Phase:
    name: str
    default_deadline_s: float
    subject: Literal["docker", "vllm", "webui"]
    waits_on: str

    @property
    def env_key(self) -> str:
        """The `.env` setting that overrides this phase's deadline, e.g. DEADLINE_WEIGHTS_LOAD_S."""
        return "DEADLINE_" + self.name.upper().replace(" ", "_") + "_S"


IMAGE_PULL = Phase("image pull", 3600, "docker", "`docker compose up --pull missing` has the images")
COMPOSE_UP = Phase("compose up", 900, "docker", "`docker compose up` created or kept the containers")
RECREATE_VLLM = Phase("recreate vllm", 900, "docker", "`docker compose up vllm` recreated vLLM")
VLLM_STARTED = Phase("vllm started", 120, "vllm", "the vLLM container is running")
WEIGHTS_LOAD = Phase("weights load", 1800, "vllm", "vLLM logs that its server started (download and load)")
ENGINE_READY = Phase("engine ready", 180, "vllm", "vLLM /health answers 200")
MODEL_LISTED = Phase("model listed", 60, "vllm", "vLLM /v1/models lists the served model, with the API key")
WEBUI_HEALTH = Phase("webui health", 300, "webui", "Open WebUI /health answers")
WEBUI_START = Phase("webui start", 300, "docker", "`docker compose up webui` started a stopped Open WebUI again")
ADMIN = Phase("admin", 120, "webui", "the admin from .env signs in (created at first start)")
MODEL_IN_WEBUI = Phase("model in webui", 120, "webui", "Open WebUI lists the served model")
DEFAULT_MODEL = Phase("default model", 30, "webui", "Open WebUI keeps the model as default, with its tool calling")
CHAT_PATH = Phase("chat path", 60, "webui", "a chat shaped like the browser's gets an answer")
DRAIN = Phase("drain", 600, "vllm", "the old vLLM's /metrics show no running or waiting request")
BENCHMARK = Phase("benchmark", 7200, "vllm", "vLLM's `bench serve` measured every concurrency level of a model")
OLD_MODEL_UNLISTED = Phase("old model unlisted", 60, "webui", "Open WebUI no longer lists the removed model")
# An upgrade's new Open WebUI migrates its database before it answers /health; a large one takes a while.
MIGRATIONS = Phase("migrations", 1800, "webui", "Open WebUI's database is at its new image's schema head")

PHASES: tuple[Phase, ...] = (
    IMAGE_PULL, COMPOSE_UP, RECREATE_VLLM, VLLM_STARTED, WEIGHTS_LOAD, ENGINE_READY, MODEL_LISTED,
    WEBUI_HEALTH, WEBUI_START, ADMIN, MODEL_IN_WEBUI, DEFAULT_MODEL, CHAT_PATH, DRAIN, OLD_MODEL_UNLISTED, BENCHMARK,
    MIGRATIONS,
)  # fmt: skip
BY_NAME = {phase.name: phase for phase in PHASES}
VLLM_PHASES = frozenset(phase.name for phase in PHASES if phase.subject == "vllm")


def check_deadline(value: float, what: str) -> float:
    """A deadline must be a positive, finite number of seconds no longer than a day."""
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= MAX_DEADLINE_S):
        raise SettingsError(
            f"{what}: {value!r} is not a usable deadline",
            hint=f"give a number of seconds above 0 and at most {MAX_DEADLINE_S:g}",
        )
    return float(value)


@dataclass(frozen=True)
class Deadlines:
    """Seconds per phase name: the table's defaults, then `.env`, then command-line options."""

    seconds: Mapping[str, float] = field(default_factory=lambda: {p.name: p.default_deadline_s for p in PHASES})

    def __getitem__(self, phase: Phase) -> float:
        return self.seconds[phase.name]

    def overridden(self, values: Mapping[str, float | None], source: Callable[[Phase], str]) -> Deadlines:
        """Override by phase name; None leaves the phase as it is. source(phase) names the origin."""
        merged = dict(self.seconds)
        for name, value in values.items():
            if value is not None:
                merged[name] = check_deadline(value, source(BY_NAME[name]))
        return Deadlines(merged)

    def from_env(self, env: Mapping[str, str], origin: str) -> Deadlines:
        """DEADLINE_<PHASE>_S settings, e.g. DEADLINE_WEIGHTS_LOAD_S=3600 for a slow download."""
        values: dict[str, float | None] = {}
        for phase in PHASES:
            text = (env.get(phase.env_key) or "").strip()
            if not text:
                continue
            try:
                values[phase.name] = float(text)
            except ValueError:
                raise SettingsError(
                    f"{origin}: {phase.env_key}={text!r} is not a number of seconds",
                    hint=f"write e.g. {phase.env_key}={phase.default_deadline_s:g}",
                ) from None
        return self.overridden(values, lambda phase: f"{origin}: {phase.env_key}")


class Reporter:
    """Receives progress; the CLI shows it. The default one stays silent (for tests and --json)."""

    def phase_start(self, name: str) -> None: ...
    def phase_progress(self, detail: str) -> None: ...
    def phase_done(self, name: str, seconds: float) -> None: ...
    def warn(self, message: str) -> None: ...
    def waiting_for_lock(self, owner: str) -> None: ...


class PhaseRunner:
    """Runs phases in order: reports each, times it into `timings`, and waits on checks with the
    phase's deadline. A prefix ("rollback: ") names the phases of a rollback apart."""

    def __init__(self, reporter: Reporter, deadlines: Deadlines, prefix: str = ""):
        self.reporter = reporter
        self.deadlines = deadlines
        self.prefix = prefix
        self.timings: dict[str, float] = {}

    def run(self, phase: Phase, action: Callable[[], T]) -> T:
        shown = self.prefix + phase.name
        self.reporter.phase_start(shown)
        start = time.monotonic()
        result = action()
        self.timings[shown] = round(time.monotonic() - start, 2)
        self.reporter.phase_done(shown, self.timings[shown])
        return result

    def wait(
        self, phase: Phase, check: Callable[[], T], *, hint: str | None = None, deadline_s: float | None = None
    ) -> T:
        deadline = deadline_s if deadline_s is not None else self.deadlines[phase]
        kwargs = {"hint": hint} if hint else {}
        return self.run(phase, lambda: wait_for(phase.name, check, deadline_s=deadline, **kwargs))

    def child(self, prefix: str) -> PhaseRunner:
        return PhaseRunner(self.reporter, self.deadlines, prefix)


def wait_for(
    phase: str,
    check: Callable[[], T],
    *,
    deadline_s: float,
    interval_s: float = POLL_INTERVAL_S,
    hint: str = "see `controller logs` for what the services are doing",
) -> T:
    """Call check until it returns; NotReady means try again, anything else stops the wait at once."""
    from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    retrying = Retrying(
        stop=stop_after_delay(deadline_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_exception_type(NotReady),
    )
    try:
        return retrying(check)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise StartupFailed(
            f"phase '{phase}' did not complete within {deadline_s:g} s" + (f": {last}" if last else ""),
            phase=phase,
            hint=hint,
        ) from None
