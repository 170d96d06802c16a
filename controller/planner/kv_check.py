"""After start-up: the planned KV capacity against what vLLM itself logged, so that `up` and
`switch` can warn when the plan was off (pure)."""

from __future__ import annotations

# `up` and `switch` warn when vLLM's own KV capacity differs from the plan by more than this.
KV_CHECK_TOLERANCE = 0.05


def kv_check(planned: int | None, logged: int | None) -> dict | None:
    """The plan against what vLLM logged at start-up ('... KV cache size: N tokens'), in tokens."""
    if not planned or not logged:
        return None
    difference = (planned - logged) / logged
    return {"planned": planned, "logged": logged, "difference_pct": round(100 * difference, 2),
            "within_tolerance": abs(difference) <= KV_CHECK_TOLERANCE}  # fmt: skip


def kv_check_warning(check: dict | None) -> str | None:
    if check is None or check["within_tolerance"]:
        return None
    return (
        f"vLLM's KV cache holds {check['logged']} tokens, the plan said {check['planned']} "
        f"({check['difference_pct']:+.1f}%): `controller plan --explain` shows each term; on a shared GPU "
        "other processes' memory comes out of the same budget"
    )
