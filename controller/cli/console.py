"""What the command line shows a person: progress, summaries and tables (rich, on stderr and
stdout). rich is imported on the first print, which `--json` output never makes."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from controller.phases import Reporter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class _LazyConsole:
    """A rich Console, made on first use."""

    def __init__(self, **options: object) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        """The Console itself (for rich widgets that take one, like Progress)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> object:
        return getattr(self.get(), name)


def make_table(*headers: str, **options: object) -> Table:
    from rich.table import Table

    return Table(*headers, **options)


# Piped output (no terminal) gets wide tables instead of truncated columns.
out = _LazyConsole(width=None if sys.stdout.isatty() else 200)
err = _LazyConsole(stderr=True, width=None if sys.stderr.isatty() else 200)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class ConsoleReporter(Reporter):
    """Live progress on stderr: a spinner on the running phase, one line per finished phase."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.status = None
        self.current = ""

    def phase_start(self, name: str) -> None:
        self.current = name
        if self.quiet:
            return
        if err.is_terminal:
            self.status = err.status(f"{name} ...")
            self.status.start()
        else:
            err.print(f"  ... {name}", highlight=False)

    def phase_progress(self, detail: str) -> None:
        if self.status is not None:
            self.status.update(f"{self.current} ... [dim]{detail}[/]")

    def phase_done(self, name: str, seconds: float) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if not self.quiet:
            err.print(f"  [green]✓[/] {name:<24} {seconds:6.1f} s", highlight=False)

    def warn(self, message: str) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        err.print(f"[yellow]warning:[/] {message}", highlight=False)

    def waiting_for_lock(self, owner: str) -> None:
        err.print(f"waiting for another controller run to finish ({owner}) ...", highlight=False)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def print_summary(result: dict, title: str) -> None:
    if result.get("noop"):
        err.print(f"[green]{title}:[/] nothing to do, '{result['model']}' is already serving and healthy")
    else:
        err.print(f"[green]{title}[/] in {result['total_s']:.1f} s")
    table = make_table(show_header=False, box=None, padding=(0, 2))
    table.add_row("URL", result["url"])
    table.add_row("admin", f"{result['admin_email']} (password in {result['admin_password_in']})")
    table.add_row("model", f"{result['model']} (served as {result['served_model_name']})")
    if "previous" in result:
        table.add_row("previous", str(result["previous"]))
    if result.get("strategy"):
        table.add_row("strategy", f"{result['strategy']} ({result.get('strategy_reason') or '-'})")
    if result.get("capacity"):
        table.add_row("capacity", result["capacity"])
    if result.get("downtime_s") is not None:
        table.add_row("chat downtime", f"{result['downtime_s']:.1f} s")
    vllm = result.get("vllm") or {}
    if vllm.get("load_time_s") is not None:
        table.add_row("vLLM load time", f"{vllm['load_time_s']:.1f} s (container start to /health 200)")
    if result.get("kv_tokens"):
        table.add_row("KV cache", kv_text(result["kv_tokens"]))
    elif vllm.get("kv_cache_tokens"):
        table.add_row("KV cache", f"{vllm['kv_cache_tokens']} tokens")
    _front_door_rows(table, result.get("tls"))
    _sign_in_row(table, result.get("sign_in"))
    err.print(table)


def _sign_in_row(table, sign_in: dict | None) -> None:
    if sign_in and (sign_in["ldap"] or sign_in["oidc"]):
        ways = [f"LDAP {sign_in['ldap']}"] * bool(sign_in["ldap"]) + [f"OIDC {sign_in['oidc']}"] * bool(sign_in["oidc"])
        local = "local form on" if sign_in["local_form"] else "local form off"
        table.add_row("sign-in", f"{', '.join(ways)}; {local}; new users: {sign_in['new_directory_users']}")


def _front_door_rows(table, tls: dict | None) -> None:
    if not tls:
        return
    if tls.get("root_ca"):
        table.add_row("root CA", f"{tls['root_ca']} (TLS=internal: give it to the browsers, see README `HTTPS`)")
    cert = tls.get("certificate")
    left = "renewed by Caddy" if tls["mode"] == "internal" else f"{cert['days_left']} days left" if cert else ""
    table.add_row("certificate", f"{cert['subject']}, until {cert['not_after'][:16]} ({left})"
                  if cert else "Caddy does not answer on HTTPS; run `controller logs caddy`")  # fmt: skip


def kv_text(check: dict) -> str:
    verdict = "" if check["within_tolerance"] else " [yellow](off by more than 5%)[/]"
    return f"{check['logged']} tokens (vLLM), {check['planned']} planned ({check['difference_pct']:+.1f}%){verdict}"


def print_history(events: list[dict]) -> None:
    if not events:
        return
    table = make_table("finished", "action", "model", "from", "outcome", "downtime", "error / notes",
                       title="recent runs")  # fmt: skip
    for e in events:
        downtime = f"{e['downtime_s']:.1f} s" if e.get("downtime_s") is not None else "-"
        # An upgrade's changes and the backup it took; an error says more than either.
        notes = "; ".join([*(f"{key} {change}" for key, change in (e.get("changes") or {}).items()),
                           *([f"backup {e['backup']}"] if e.get("backup") else [])])  # fmt: skip
        table.add_row(
            e["finished"],
            e["action"],
            e["profile"],
            e.get("previous") or "-",
            e["outcome"],
            downtime,
            e["error"][:80] if e.get("error") else notes,
        )
    out.print(table)


def print_models(rows: list[dict]) -> None:
    table_ = make_table(title="Model profiles")
    for column in ("name", "model", "quantization", "dtype", "context", "weights", "accelerator"):
        table_.add_column(column)
    for row in rows:
        table_.add_row(
            row["name"],
            row["model"],
            row["quantization"] or "-",
            row["dtype"],
            str(row["max_model_len"]),
            f"{row['weights_gb']:.1f} GB",
            row["accelerator"],
        )
    out.print(table_)


def print_status(result: dict) -> None:
    out.print(f"model: [bold]{result['model'] or '-'}[/] (served as {result['served_model_name'] or '-'})")
    out.print(f"url:   {result['url']}")
    for warning in result.get("warnings", []):
        out.print("[yellow]warning:[/]", warning.replace("[", r"\["), highlight=False)
    if result.get("offline"):
        out.print("[yellow]offline:[/] OFFLINE=true: nothing is pulled or downloaded; vLLM is on an internal network")
    if pending := result.get("pending"):
        out.print(
            f"[yellow]{'in progress' if pending['in_progress'] else 'unfinished'}:[/] "
            f"`{pending['action']} {pending['target']}` (pid {pending['pid']}, started {pending['started']})"
            + ("" if pending["in_progress"] else f" did not finish; {pending['resolve']}"),
            highlight=False,
        )
    table_ = make_table("service", "model", "state", "health", "uptime", "image")
    for name, info in result["services"].items():
        uptime = f"{info['uptime_s']} s" if info["uptime_s"] is not None else "-"
        service = name if info.get("service") in (None, name) else f"{name} ({info['service']})"
        table_.add_row(service, info.get("profile") or "-", info["state"], info["health"] or "-", uptime,
                       info["image"] or "-")  # fmt: skip
    if result.get("capacity"):
        out.print(f"[yellow]capacity:[/] {result['capacity']}")
    out.print(table_)
    if result.get("kv_tokens"):
        out.print(f"KV cache: {kv_text(result['kv_tokens'])}")
    m = result["metrics"]
    if m:
        out.print(
            f"vLLM: {m.get('requests_running', 0):g} running, {m.get('requests_waiting', 0):g} waiting, "
            f"KV cache {100 * m.get('kv_cache_usage', 0):.1f}% used"
        )
    if m.get("prefix_cache_queries"):
        out.print(
            f"prefix cache: {100 * m['prefix_cache_hit_rate']:.1f}% of prompt tokens hit "
            f"({m.get('prefix_cache_hits', 0):.0f} of {m['prefix_cache_queries']:.0f} since vLLM started)"
        )
    print_alerts(result)
    backup = result.get("last_backup")
    if backup is None:
        out.print("[yellow]backup:[/] none yet; run `controller backup` (users and chats have no other copy)")
    else:
        out.print(f"backup: {backup['age_s'] / 3600:.1f} h ago ({backup['path']})", highlight=False)
    print_history(result["history"][-5:])


def print_alerts(result: dict) -> None:
    urls = result.get("monitoring")
    if not urls:
        return
    grafana = f", Grafana {urls['grafana']} (admin, GRAFANA_ADMIN_PASSWORD in .env)" if "grafana" in urls else ""
    out.print(f"monitoring: Prometheus {urls['prometheus']}, Alertmanager {urls['alertmanager']}{grafana}",
              highlight=False)  # fmt: skip
    from rich.markup import escape

    alerts = result["alerts"]
    if alerts is None:
        out.print("[yellow]alerts:[/] Alertmanager does not answer; run `controller logs alertmanager`")
    for alert in alerts or []:
        name, severity, since = (escape(alert[key]) for key in ("name", "severity", "since"))
        out.print(f"[red]alert {name}[/] ({severity}, since {since}): {escape(alert['summary'])}")


def print_plan(name: str, memory: float | None, source: str, result, *, explain: bool = False) -> None:
    from controller.planner.engine import GIB

    verdict = "[green]fits[/]" if result.fits else "[red]does not fit[/]"
    where = f"{memory:.1f} GiB ({source})" if memory else "cpu"
    out.print(f"[bold]{name}[/] on {where}, vLLM {result.vllm_version} ({result.engine}): {verdict}")
    table_ = make_table(show_header=False, box=None, padding=(0, 2))
    table_.add_row("weights", f"{result.weights_gib:.2f} GiB")
    if result.accelerator == "gpu":
        table_.add_row("other vLLM memory", f"{result.overhead_gib:.2f} GiB (activations, non-torch, CUDA graphs)")
    table_.add_row("KV budget", f"{result.kv_budget_gib:.2f} GiB at utilization {result.gpu_memory_utilization:g}")
    table_.add_row("KV capacity", f"{result.kv_cache_tokens} tokens")
    table_.add_row("KV per token", f"{result.kv_bytes_per_token / 1024:.0f} KiB")
    table_.add_row(f"KV per sequence ({result.max_model_len})", f"{result.kv_bytes_per_sequence / GIB:.3f} GiB")
    batch = f"--max-num-batched-tokens {result.max_num_batched_tokens} --max-num-seqs {result.max_num_seqs}"
    table_.add_row("batch", batch)
    table_.add_row("max concurrency", f"{result.max_concurrency:.1f} full-length sequences")
    table_.add_row("longest context that fits", str(result.max_model_len_fit))
    out.print(table_)
    if explain:
        _print_terms(result.terms)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}")
    for advice in result.recommendations:
        out.print(f"[cyan]try:[/] {advice}")


def _print_terms(terms: list[dict]) -> None:
    """The KV budget term by term: what vLLM computes at start-up, and which code it comes from."""
    sign = {"total": " ", "minus": "-", "info": "("}
    table_ = make_table("", "GiB", "term", "source", title="KV budget, as vLLM computes it")
    for term in terms:
        gib = f"{term['gib']:.2f}" + (")" if term["kind"] == "info" else "")
        table_.add_row(sign[term["kind"]], gib, term["name"], term["source"])
    out.print(table_)
