"""The runtime of one process: what it changes in the interpreter, and puts back."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from support.server import write_config

from jobhooks.registry import load
from jobhooks.service.runtime import YOUNG_GENERATION, Runtime


def test_a_runtime_enlarges_the_collectors_young_generation_while_it_runs(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    before = gc.get_threshold()

    async def start_and_stop() -> tuple[int, int, int]:
        await runtime.start()
        try:
            return gc.get_threshold()
        finally:
            await runtime.stop()

    running = asyncio.run(start_and_stop())

    assert running == (YOUNG_GENERATION, *before[1:])
    assert gc.get_threshold() == before, "put back as it was found"
