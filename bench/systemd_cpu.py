"""CPU per collection of the systemd collector with 500 units: hostagent's against node_exporter
1.5's systemd collector, both on the same real dbus-daemon serving the stand-in systemd
manager of tests/systemd_bus.py (no systemd can run as PID 1 here), same run.

Units: 400 services (task and restart properties), 50 sockets (accepted, connections,
refused), 25 timers (last trigger) and 25 targets, in a mix of active states.
hostagent: process CPU time per collect(); node_exporter: its process's CPU per scrape. The
stand-in service's CPU (the D-Bus peer both pay the same calls to) is not counted for either.

usage: python bench/systemd_cpu.py [--cycles N]   (default 20; about 30 s)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import free_port, scrape_cpu, start, wait_http

from agent.collectors.systemd import Options, SystemdCollector
from tests.systemd_bus import systemd_bus

STATES = ("active", "active", "active", "inactive", "failed", "activating")
FLAGS = ["--collector.disable-defaults", "--collector.systemd",
         "--collector.systemd.enable-task-metrics",
         "--collector.systemd.enable-restarts-metrics",
         r"--collector.systemd.unit-exclude=.+\.(automount|device|mount|scope|slice)"]


def spec(units: int = 500) -> dict[str, Any]:
    made: list[dict[str, Any]] = []
    for i in range(units):
        state = STATES[i % len(STATES)]
        if i < 400:
            made.append({"name": f"svc{i}.service", "active": state, "properties": {
                "Service": {"Type": "simple", "NRestarts": i % 3, "TasksCurrent": 2,
                            "TasksMax": 4915}}})
        elif i < 450:
            made.append({"name": f"sock{i}.socket", "active": state, "properties": {
                "Socket": {"NAccepted": i, "NConnections": 1, "NRefused": 0}}})
        elif i < 475:
            made.append({"name": f"tmr{i}.timer", "active": state, "properties": {
                "Timer": {"LastTriggerUSec": 1718000000000000 + i}}})
        else:
            made.append({"name": f"tgt{i}.target", "active": state})
    return {"manager": {"Version": "252.22-1~deb12u1", "Virtualization": "kvm",
                        "SystemState": "running"}, "units": made}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostagent-systemd-") as tmp, \
            systemd_bus(Path(tmp), spec()) as address:
        collector = SystemdCollector(Options(task_metrics=True, restarts_metrics=True),
                                     address, timeout=30)
        series = sum(len(f.samples) for f in collector.collect())
        begin = time.process_time()
        for _ in range(args.cycles):
            collector.collect()
        ours = (time.process_time() - begin) / args.cycles

        port = free_port()
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        node = start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                      *FLAGS])
        try:
            wait_http(port, "/metrics")
            theirs, body = scrape_cpu(node.pid, port, args.cycles, warm_up=1, timeout=60)
        finally:
            node.terminate()
            node.wait(timeout=10)
    their_series = sum(1 for line in body.splitlines() if line.startswith(b"node_systemd"))
    print(f"systemd collector, 500 units on the stand-in bus ({args.cycles} cycles)")
    print(f"{'hostagent CPU per collection':36s} {ours * 1e3:8.3f} ms  ({series} series)")
    print(f"{'node_exporter 1.5 CPU per scrape':36s} {theirs * 1e3:8.3f} ms  "
          f"({their_series} series)")
    print(f"{'ratio hostagent / node_exporter':36s} {ours / theirs:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
