"""``serve`` and ``worker``: run jobhooks."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from jobhooks.cli.app import ConfigOption, app, notice
from jobhooks.cli.common import (
    LogFormatOption,
    LogLevelOption,
    StrictOption,
    choose_config,
    run_until_stopped,
    runtime_or_exit,
    setup_process_logging,
)
from jobhooks.cli.listen import bind_listener, split_listen
from jobhooks.service.runtime import Runtime


def build_server(runtime: Runtime) -> uvicorn.Server:
    """A uvicorn server for the runtime's web app (uvloop, httptools writing each answer in
    one send, no access log), to run on a socket bound beforehand (see
    :func:`~jobhooks.cli.listen.bind_listener`)."""
    from jobhooks.api.protocol import OneWriteProtocol
    from jobhooks.web import create_app

    config = uvicorn.Config(
        create_app(runtime),
        loop="uvloop",
        http=OneWriteProtocol,
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's records go through jobhooks' own handler and format
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def _handlers(runtime: Runtime) -> str:
    registry = runtime.live.registry
    quarantined = len(registry.quarantined)
    count = len(registry)
    named = f"{count} handler" + ("" if count == 1 else "s")
    return named + (f", {quarantined} quarantined" if quarantined else "")


@app.command()
def serve(
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT to listen on (overrides [server] listen).")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run workers elsewhere.")
    ] = False,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    strict: StrictOption = False,
) -> None:
    """Run the HTTP API and (unless --no-worker) a worker in this process."""
    choice = choose_config(config)
    setup_process_logging(choice, log_level, log_format)
    if listen is not None:
        split_listen(listen)
    runtime = runtime_or_exit(choice, with_worker=not no_worker, strict=strict)
    try:
        listener = bind_listener(listen or runtime.live.config.server.listen)
    except BaseException:
        runtime.store.close()
        raise
    host, port = listener.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server = build_server(runtime)
    role = "API only" if no_worker else "API and worker"
    notice(
        f"jobhooks serving on http://{address} ({role}; "
        f"{_handlers(runtime)}). SIGHUP reloads the configuration."
    )
    runtime.handle_sighup = True
    with listener:
        server.run(sockets=[listener])


@app.command()
def worker(
    config: ConfigOption = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    strict: StrictOption = False,
) -> None:
    """Run a worker only: claim due runs from the database and run their handlers
    (and follow the platform's job history when [poll] enabled)."""
    choice = choose_config(config)
    setup_process_logging(choice, log_level, log_format)
    runtime = runtime_or_exit(choice, with_worker=True, strict=strict)
    notice(
        f"jobhooks worker ({_handlers(runtime)}): SIGHUP reloads the "
        "configuration; SIGTERM stops after running handlers finish."
    )
    runtime.handle_sighup = True

    run_until_stopped(runtime)
