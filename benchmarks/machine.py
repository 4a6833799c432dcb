"""What the machine gave a benchmark: its speed, and where its CPU went.

This machine's speed drifts by up to a third within an hour, and two cores are shared by the
broker, Weaviate and the processes measured. A throughput figure means little without them:

- `machine_speed()`: rounds per second of a fixed workload of the kind the services do, on one
  core; print it before and after a run, and compare runs only at similar speeds.
- `CpuMeter`: CPU seconds the given processes used between `start()` and `stop()`, and the share
  of the machine's cores that were busy meanwhile (Linux /proc). With it a throughput can be put
  per CPU second, which tells a design that stops scaling apart from a machine that ran out of
  cores.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_speed(seconds: float = 2.0) -> float:
    """Rounds per second of a fixed workload of the kind the services do (JSON in and out, a sort),
    on one core."""
    payload = {"ticket": {"id": "t-1", "text": "my card was charged twice " * 8,
                          "tags": [f"tag-{i}" for i in range(40)]}, "scores": [i / 7 for i in range(200)]}
    rounds, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            sorted(json.loads(json.dumps(payload))["scores"], reverse=True)
        rounds += 50
    return rounds / (time.perf_counter() - started)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name, in parentheses, may hold spaces: fields are counted after it.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot (/proc/stat's first line)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class CpuUse:
    cpu_s: dict[int, float]  # per pid
    busy_share: float  # of all the machine's cores, over the interval
    cores: int
    elapsed_s: float

    @property
    def others_cpu_s(self) -> float:
        """CPU seconds every other process used meanwhile (the broker, Weaviate, the benchmark)."""
        return self.busy_share * self.cores * self.elapsed_s - sum(self.cpu_s.values())


class CpuMeter:
    def __init__(self, pids: list[int]) -> None:
        self._pids = list(pids)
        self._start: dict[int, float] = {}
        self._machine = (0.0, 0.0)
        self._started = 0.0

    def start(self) -> None:
        self._start = {pid: process_cpu_s(pid) for pid in self._pids}
        self._machine = machine_busy_s()
        self._started = time.perf_counter()

    def stop(self) -> CpuUse:
        cpu = {pid: process_cpu_s(pid) - self._start[pid] for pid in self._pids}
        busy, total = machine_busy_s()
        busy_share = (busy - self._machine[0]) / max(total - self._machine[1], 1e-9)
        return CpuUse(cpu, busy_share, os.cpu_count() or 1, time.perf_counter() - self._started)


def throughput_figures(cpu: CpuUse, events: int, elapsed_s: float, replicas: int, name: str = "events") -> dict:
    """What replicas on Kafka did with `events` in `elapsed_s`: per second, per replica, per replica
    CPU second (if it holds from one replica to two while the throughput does not double, the
    machine ran out of cores, not the design out of scale), and the machine's other load."""
    return {
        f"{name}_per_s": round(events / elapsed_s),
        f"{name}_per_s_per_replica": round(events / elapsed_s / replicas),
        "replica_cpu_s": [round(s, 2) for s in cpu.cpu_s.values()],
        f"{name}_per_replica_cpu_s": round(events / sum(cpu.cpu_s.values())),
        "other_processes_cpu_s": round(cpu.others_cpu_s, 2),
        "machine_busy_share": f"{cpu.busy_share:.0%} of {cpu.cores} cores",
    }
