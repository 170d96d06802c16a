"""The one error hierarchy. Only the CLI turns these into messages and exit codes."""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class ControllerError(Exception):
    """Base of every error the controller reports to an operator."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []


class InputError(ControllerError):
    """The operator's input (catalog, settings, arguments) is wrong; nothing was touched."""

    exit_code = EXIT_BAD_INPUT


class CatalogError(InputError):
    pass


class SettingsError(InputError):
    pass


class RenderError(InputError):
    pass


class OutputDirError(InputError):
    """A directory the operator named is not one the controller may write into; nothing was written."""


class PreflightError(InputError):
    """A check before launch failed; no container was created or changed."""


class RuntimeFailure(ControllerError):
    """Something went wrong while acting on Docker or the running services."""


class CommandError(RuntimeFailure):
    """An external command (docker compose) failed."""

    def __init__(self, cmd: list[str], returncode: int, stdout: str, stderr: str):
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-15:]
        super().__init__(
            f"command failed with exit code {returncode}: {' '.join(cmd)}",
            details=tail,
        )


class NotReady(RuntimeFailure):
    """A service answered, but not yet as wanted. Waits retry on it; elsewhere it is a failure."""


class DockerUnavailable(PreflightError):
    """Docker or Compose v2 is missing or unreachable: nothing was started."""


class StartupFailed(RuntimeFailure):
    """A service did not reach the healthy state; carries the phase and evidence."""

    def __init__(self, message: str, *, phase: str, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message, hint=hint, details=details)
        self.phase = phase


class AdminError(RuntimeFailure):
    pass


class ChatRefused(RuntimeFailure):
    """The model refused a chat outright (e.g. vLLM rejects the tools Open WebUI adds); waiting won't help."""


class JournalError(InputError):
    """The controller's journal cannot be read or is of an unknown version; nothing was changed."""


class LockTimeout(RuntimeFailure):
    pass


class WriteFailed(RuntimeFailure):
    """A file could not be written (disk full, read-only filesystem); its previous version is intact."""


class SwitchFailed(RuntimeFailure):
    pass


class RestoreFailed(RuntimeFailure):
    """A restored backup did not come up; the safety backup was put back (or that failed too)."""
