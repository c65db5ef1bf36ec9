"""A busy server leaves its requests' objects to reference counting: the cyclic
collector, which runs on the event loop between check-ins, stays out of the way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from support.reports import report
from support.server import ServerProcess, StartServer, create_tokens, write_config


def _young_passes(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith('python_gc_collections_total{generation="0"}')
    ]
    return float(line.rsplit(" ", 1)[1])


def test_check_ins_in_flight_by_the_hundred_do_not_set_off_the_collector(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, "")
    [token] = create_tokens(config, "--admin")
    server = start_server(config)

    async def burst(count: int, clients: int) -> list[int]:
        limits = httpx.Limits(max_connections=clients)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=server.url, limits=limits, headers=headers, timeout=120.0
        ) as client:
            answers = await asyncio.gather(
                *(client.post("/api/v1/job-completions", json=report()) for _ in range(count))
            )
        return [answer.status_code for answer in answers]

    before = _young_passes(server)
    statuses = asyncio.run(burst(600, 120))
    after = _young_passes(server)

    assert statuses == [202] * 600
    assert after - before <= 2, f"{after - before:.0f} passes of the collector during the burst"
