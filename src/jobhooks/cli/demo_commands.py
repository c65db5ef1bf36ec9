"""``simulate`` and ``demo``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from jobhooks.cli.app import app, console, fail, setup_logging
from jobhooks.cli.operator_commands import DEFAULT_URL, TokenOption, UrlOption
from jobhooks.demo.fleet import FleetPlan, SimulationResult
from jobhooks.demo.fleet import simulate as run_simulation
from jobhooks.demo.run import (
    BURST,
    DIGEST_HANDLER,
    RULED_HANDLER,
    demo_config,
    demo_plan,
    free_listen,
    run_demo,
)

Agents = Annotated[int, typer.Option(min=1, max=10_000, help="Orchestrators in the fleet.")]
Count = Annotated[int, typer.Option(min=1, max=10_000_000, help="Reports to send.")]
Rate = Annotated[float, typer.Option(min=0, help="Reports per second (0: as fast as possible).")]
Concurrency = Annotated[int, typer.Option(min=1, max=1024, help="Connections in parallel.")]
Failure = Annotated[float, typer.Option(min=0, max=1, help="Share of failed jobs.")]
Warning_ = Annotated[float, typer.Option(min=0, max=1, help="Share of jobs with warnings.")]


def _print_simulation(result: SimulationResult) -> None:
    p50, p99 = result.percentile(0.50), result.percentile(0.99)
    rate = result.accepted / result.elapsed if result.elapsed else 0.0
    console.print(
        f"{result.accepted} of {sum(result.statuses.values())} reports accepted in "
        f"{result.elapsed:.1f} s ({rate:.0f}/s); acknowledgement latency "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    others = {code: n for code, n in result.statuses.items() if code != 202}
    if others or result.errors:
        console.print(f"not accepted: {others or ''} {dict(result.errors) or ''}", markup=False)


@app.command()
def simulate(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    agents: Agents = 20,
    count: Count = 2000,
    rate: Rate = 0.0,
    concurrency: Concurrency = 8,
    failure: Failure = 0.10,
    warning: Warning_ = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same fleet).")] = 1,
    burst: Annotated[
        int,
        typer.Option(
            min=0,
            max=1000,
            help="Then this many machines fail every job at once (40 jobs each): a burst.",
        ),
    ] = 0,
) -> None:
    """Simulate an orchestrator fleet reporting completed jobs (needs an admin token)."""
    if not token:
        fail("an admin token is needed: pass --token or set JOBHOOKS_TOKEN")
    if failure + warning > 1:
        fail("--failure plus --warning must not exceed 1")
    plan = FleetPlan(agents, count, rate, concurrency, failure, warning, seed=seed, burst=burst)
    result = asyncio.run(run_simulation(url, token, plan))
    _print_simulation(result)
    if result.accepted != count + burst * plan.burst_jobs:
        raise typer.Exit(1)


def _summary(summary: dict[str, Any]) -> None:
    _print_simulation(summary["simulation"])
    table = Table(title="Completions by result", title_justify="left")
    table.add_column("result")
    table.add_column("completions", justify="right")
    for result, count in sorted(summary["completions"].items()):
        table.add_row(result, str(count))
    console.print(table)
    runs = Table(title="Handler runs by status", title_justify="left")
    statuses = ("pending", "running", "succeeded", "failed", "dead")
    runs.add_column("handler")
    for status in statuses:
        runs.add_column(status, justify="right")
    for handler, counts in sorted(summary["runs"].items()):
        runs.add_row(handler, *(str(counts[s]) for s in statuses))
    console.print(runs)
    fired = sum(summary["runs"].get(RULED_HANDLER, {}).values())
    skipped = summary["not_sent"].get(RULED_HANDLER, 0)
    console.print(
        f"{RULED_HANDLER} (when failure-streak at 2, recovered): fired for {fired:,} "
        f"completions, not sent for {skipped:,}; see why on any completion's page",
        markup=False,
    )
    members, digests = summary["digests"].get(DIGEST_HANDLER, (0, 0))
    console.print(
        f"{DIGEST_HANDLER} (when failure, a digest per machine): {members:,} failures "
        f"delivered as {digests:,} digests ({BURST} machines failed every job at once at "
        "the end)",
        markup=False,
    )
    c50, c99 = summary["checkin_latency"]
    d50, d99 = summary["dispatch_latency"]
    console.print(
        f"check-in latency p50 {c50 * 1000:.1f} ms, p99 {c99 * 1000:.1f} ms; "
        f"dispatch latency (commit -> handler start) p50 {d50 * 1000:.1f} ms, "
        f"p99 {d99 * 1000:.1f} ms"
    )


@app.command()
def demo(
    agents: Agents = 20,
    count: Count = 2000,
    rate: Rate = 0.0,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT (a free port if taken).")
    ] = "127.0.0.1:8080",
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop after the summary instead of serving on.")
    ] = False,
) -> None:
    """Serve on a temporary database, simulate a fleet against it, summarise, keep serving."""
    setup_logging("WARNING")
    data_dir = Path(tempfile.mkdtemp(prefix="jobhooks-demo-"))
    config_path = data_dir / "jobhooks.toml"
    config_path.write_text(demo_config(data_dir, free_listen(listen)), encoding="utf-8")

    def announce(url: str, _token: str) -> None:
        console.print(f"jobhooks demo serving at {url} (data in {data_dir})", markup=False)

    async def main() -> tuple[Any, dict[str, Any]]:
        plan = demo_plan(agents, count, rate)
        return await run_demo(config_path, plan, announce)

    def stop(_signum: int, _frame: object) -> None:
        # The same clean stop as Ctrl-C: the server child first, then the temporary folder.
        raise KeyboardInterrupt

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    server = None
    try:
        server, summary = asyncio.run(main())
        _summary(summary)
        if not exit_after:
            console.print(
                f"\nStill serving at {summary['url']}; Ctrl-C (or SIGTERM) stops it.\n"
                f"Dashboard: {summary['url']}/ui/ (sign in with this admin token: "
                f"{summary['admin_token']}; a read-only one: jobhooks token create "
                f"--viewer --config {config_path})\n"
                "Explore from a terminal with:\n"
                f"  export JOBHOOKS_URL={summary['url']} JOBHOOKS_TOKEN={summary['admin_token']}\n"
                "  jobhooks completions; jobhooks runs --status dead; jobhooks job-types\n"
                f"  curl {summary['url']}/metrics",
                markup=False,
                soft_wrap=True,
            )
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)  # a second signal must not cut the cleanup
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
