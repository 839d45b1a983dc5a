"""Shared pieces of the benchmarks: Docker event timestamps, summaries, result files."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


class EventWatch:
    """`docker events` for one container and one event type; yields each event's timeNano."""

    def __init__(self, container: str, event: str) -> None:
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--format",
                "{{json .}}",
                "--filter",
                f"container={container}",
                "--filter",
                f"event={event}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    async def next(self, status_suffix: str = "") -> int:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            event = json.loads(line)
            if str(event.get("status", event.get("Action", ""))).endswith(status_suffix):
                return int(event["timeNano"])

    def close(self) -> None:
        self.proc.terminate()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 2),
        "best": round(ordered[0], 2),
        "worst": round(ordered[-1], 2),
    }


def machine() -> str:
    return f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"


def write_result(name: str, report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "raw"}, indent=2))
