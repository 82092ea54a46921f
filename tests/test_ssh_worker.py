"""The SSH worker against real OpenSSH servers on loopback: probes, checks, the node module
compared with the local collectors, host keys, connection reuse and reconnects."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from agent.config import SshConfig
from agent.exposition.formats import TEXT
from agent.exposition.registry import Registry
from agent.exposition.render import RuntimeFamilies, render
from agent.ssh.worker import SshWorker
from tests.sshd import SshLab, user_key

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.asynccontextmanager
async def worker(config: SshConfig, registry: Registry | None = None
                 ) -> AsyncIterator[SshWorker]:
    """A worker whose rounds the test runs (run_once), stopped afterwards."""
    ssh = SshWorker(config, registry or Registry())
    await ssh.start(rounds=False)
    try:
        yield ssh
    finally:
        await ssh.stop()


def series(families: list[Metric], drop: tuple[str, ...] = ()) -> Series:
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))):
            s.value for f in families for s in f.samples}


def results(ssh: SshWorker, target: str) -> Series:
    modules = ssh.module_families(target)
    assert modules is not None, f"no round for {target}"
    return series([f for group in modules.values() for f in group])


def failure(values: Series) -> str | None:
    hot = [dict(labels)["reason"] for (name, labels), value in values.items()
           if name == "hostagent_ssh_failure" and value == 1]
    assert len(hot) <= 1, "one-hot"
    return hot[0] if hot else None


def value(values: Series, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


CHECKS = [
    {"name": "loadavg", "command": "cat /proc/loadavg", "regex": r"^\d+\.\d+ "},
    {"name": "exit3", "command": "exit 3", "expect_status": 3},
    {"name": "wrong_status", "command": "echo no >&2; exit 4"},
    {"name": "no_match", "command": "echo hello", "regex": "^bye$"},
]


async def test_login_and_checks(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    config = ssh_lab.config([{"target": name, "labels": {"role": "db"}}], checks=CHECKS)
    registry = Registry()
    async with worker(config, registry) as ssh:
        await ssh.run_once()
        values = results(ssh, name)
        assert value(values, "hostagent_ssh_up") == 1
        assert value(values, "hostagent_ssh_connections_open") == 1
        assert value(values, "hostagent_ssh_handshakes_total") == 1
        assert value(values, "hostagent_ssh_probe_duration_seconds") > 0
        assert value(values, "hostagent_ssh_check_success", check="loadavg") == 1
        assert value(values, "hostagent_ssh_check_exit_status", check="loadavg") == 0
        assert value(values, "hostagent_ssh_check_success", check="exit3") == 1
        assert value(values, "hostagent_ssh_check_exit_status", check="exit3") == 3
        assert value(values, "hostagent_ssh_check_success", check="wrong_status") == 0
        assert value(values, "hostagent_ssh_check_exit_status", check="wrong_status") == 4
        assert value(values, "hostagent_ssh_check_success", check="no_match") == 0
        assert failure(values) == "command", "the first failing check gives the reason"
        assert ssh.up_count() == (1, 1)
        # In the registry the target's families come with its labels, kept apart.
        snapshot = registry.targets[name]
        assert dict(snapshot.labels) == {"target": name, "role": "db"}
        assert "login" in snapshot.modules and not registry.snapshots
    assert name not in registry.targets, "stopping removes the target's series"


async def test_output_reason_when_only_the_regex_fails(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    config = ssh_lab.config([name], checks=[CHECKS[3]])
    async with worker(config) as ssh:
        await ssh.run_once()
        assert failure(results(ssh, name)) == "output"


def local_node_families(procfs: Path = Path("/proc")) -> list[Metric]:
    from agent.collectors.catalog import DiskstatsSettings, FilesystemSettings
    from agent.collectors.cpu import CpuCollector
    from agent.collectors.diskstats import DiskstatsCollector
    from agent.collectors.filesystem import FilesystemCollector
    from agent.collectors.load import LoadCollector
    from agent.collectors.memory import MemoryCollector
    from agent.collectors.netdev import NetdevCollector
    from agent.collectors.system import SystemCollector

    disks, fs = DiskstatsSettings(), FilesystemSettings()
    collectors: list[Any] = [
        CpuCollector(procfs), MemoryCollector(procfs), LoadCollector(procfs),
        NetdevCollector(procfs, None, None),
        DiskstatsCollector(procfs, Path("/sys"), disks.device_include, disks.device_exclude),
        FilesystemCollector(procfs, Path("/"), fs.mount_points_exclude, fs.fs_types_exclude, 5),
        SystemCollector(procfs, Path("/sys"), Path("/"))]
    return [family for collector in collectors for family in collector.collect()]


async def test_node_module_matches_the_local_collectors(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    config = ssh_lab.config([name], modules={"node": {"enabled": True}})
    registry = Registry()
    async with worker(config, registry) as ssh:
        before_families = local_node_families()
        await ssh.run_once()
        after_families = local_node_families()
        modules = ssh.module_families(name)
        assert modules is not None and failure(results(ssh, name)) is None
        remote_families = modules["node"]

        # Same names, types and help as the local collectors: the renderer merges them.
        local_signatures = {f.name: (f.type, f.documentation) for f in after_families}
        for family in remote_families:
            assert local_signatures.get(family.name) == (family.type, family.documentation), \
                family.name
        names = {f.name for f in remote_families}
        assert {"node_cpu_seconds", "node_memory_MemTotal_bytes", "node_load1",
                "node_network_receive_bytes", "node_filesystem_size_bytes",
                "node_boot_time_seconds", "node_context_switches", "node_time_seconds"} <= names

        before, after = series(before_families), series(after_families)
        remote = series(remote_families)
        counters = {f.name for f in remote_families if f.type == "counter"}
        checked = 0
        for key, got in remote.items():
            family = next(f for f in remote_families if any(s.name == key[0] for s in f.samples))
            if family.name in counters and key in before and key in after:
                # The remote reading happened between the two local ones.
                assert before[key] - 1e-6 <= got <= after[key] + 1e-6, key
                checked += 1
        assert checked > 20
        for exact in ("node_memory_MemTotal_bytes", "node_boot_time_seconds"):
            assert remote[(exact, ())] == after[(exact, ())]
        root = (("device", next(dict(k[1])["device"] for k in remote
                                if k[0] == "node_filesystem_size_bytes"
                                and dict(k[1])["mountpoint"] == "/")),
                ("fstype", "ext4"), ("mountpoint", "/"))
        root_key = tuple(sorted(root))
        if ("node_filesystem_size_bytes", root_key) in after:
            assert remote[("node_filesystem_size_bytes", root_key)] == \
                after[("node_filesystem_size_bytes", root_key)]
        # Volatile gauges: same order of magnitude.
        total = after[("node_memory_MemTotal_bytes", ())]
        assert abs(remote[("node_memory_MemAvailable_bytes", ())]
                   - after[("node_memory_MemAvailable_bytes", ())]) < 0.2 * total
        assert abs(remote[("node_load1", ())] - after[("node_load1", ())]) < 5
        assert abs(remote[("node_time_seconds", ())] - time.time()) < 60

        # Not on /metrics by default: a remote host never adds to the local host's series.
        from agent.exposition.registry import Snapshot

        registry.publish(Snapshot.of("load", [f for f in after_families
                                              if f.name.startswith("node_load")]))
        body = render(1, registry.snapshots, [], RuntimeFamilies(), [TEXT],
                      registry.targets, frozenset({"login"})).bodies[TEXT].plain
        assert body.count(b"# TYPE node_load1 gauge") == 1
        assert f'target="{name}"'.encode() in body and b"node_load1{" not in body
        # Asked for (ssh.node_on_metrics): next to the local series, labelled by target,
        # nothing dropped.
        body = render(1, registry.snapshots, [], RuntimeFamilies(), [TEXT],
                      registry.targets, frozenset({"login", "node"})).bodies[TEXT].plain
        assert body.count(b"# TYPE node_load1 gauge") == 1
        assert b"node_load1 " in body and f'node_load1{{target="{name}"}}'.encode() in body
        assert b'hostagent_collector_dropped_families{' not in body


async def test_host_key_mismatch_and_unknown_host(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server(trusted=False)
    name = f"127.0.0.1:{sshd.ports[0]}"
    # A different key recorded for this host and port: a changed host key.
    other = user_key(tmp_path, "other_host_key")
    ssh_lab.trust([f"[127.0.0.1]:{sshd.ports[0]} {' '.join(other.public.split()[:2])}"])
    async with worker(ssh_lab.config([name])) as ssh:
        await ssh.run_once()
        values = results(ssh, name)
        assert value(values, "hostagent_ssh_up") == 0
        assert failure(values) == "host_key"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    async with worker(ssh_lab.config([name], known_hosts=str(empty))) as ssh:
        await ssh.run_once()
        assert failure(results(ssh, name)) == "host_key", "an unknown host is not trusted"
    missing = ssh_lab.config([name], known_hosts=str(tmp_path / "absent"))
    async with worker(missing) as ssh:
        await ssh.run_once()
        assert failure(results(ssh, name)) == "host_key"


async def test_insecure_opt_out_connects_and_warns(ssh_lab: SshLab, caplog) -> None:
    sshd = ssh_lab.server(trusted=False)
    name = f"127.0.0.1:{sshd.ports[0]}"
    async with worker(ssh_lab.config([name], insecure_ignore_host_keys=True)) as ssh:
        await ssh.run_once()
        assert value(results(ssh, name), "hostagent_ssh_up") == 1
    assert "host keys are NOT verified" in caplog.text


async def test_wrong_key_and_per_target_overrides(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server(ports=2)
    first, second = (f"127.0.0.1:{port}" for port in sshd.ports)
    stranger = user_key(tmp_path, "stranger")
    config = ssh_lab.config([
        {"target": first, "key_file": str(stranger.path)},       # a key sshd does not know
        {"target": second, "user": "nobody-here"},               # not in AllowUsers
        {"target": "127.0.0.1", "port": sshd.ports[0]},          # port from the override
    ])
    async with worker(config) as ssh:
        await ssh.run_once()
        assert failure(results(ssh, first)) == "auth"
        assert failure(results(ssh, second)) == "auth"
        assert value(results(ssh, "127.0.0.1"), "hostagent_ssh_up") == 1


async def test_connection_reuse_keeps_handshakes_flat(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    config = ssh_lab.config([name], checks=CHECKS[:1])
    async with worker(config) as ssh:
        for _ in range(4):
            await ssh.run_once()
            values = results(ssh, name)
            assert value(values, "hostagent_ssh_handshakes_total") == 1
            assert value(values, "hostagent_ssh_check_success", check="loadavg") == 1
        await ssh.run_round(name, {"login"})  # login alone: a no-op on the kept connection
        assert value(results(ssh, name), "hostagent_ssh_handshakes_total") == 1
        assert value(results(ssh, name), "hostagent_ssh_up") == 1
    async with worker(ssh_lab.config([name], reuse_connections=False)) as ssh:
        for round_number in range(1, 4):
            await ssh.run_once()
            values = results(ssh, name)
            assert value(values, "hostagent_ssh_handshakes_total") == round_number
            assert value(values, "hostagent_ssh_connections_open") == 0


async def test_reconnects_after_sshd_is_killed_and_restarted(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    async with worker(ssh_lab.config([name], checks=CHECKS[:1])) as ssh:
        await ssh.run_once()
        assert value(results(ssh, name), "hostagent_ssh_up") == 1
        sshd.kill()
        await ssh.run_once()
        values = results(ssh, name)
        assert (value(values, "hostagent_ssh_up"), failure(values)) == (0, "connect"), values
        assert value(values, "hostagent_ssh_check_success", check="loadavg") == 0
        sshd.start()
        await ssh.run_once()
        values = results(ssh, name)
        assert (value(values, "hostagent_ssh_up"), failure(values)) == (1, None), values
        assert value(values, "hostagent_ssh_handshakes_total") == 3, values
        assert value(values, "hostagent_ssh_check_success", check="loadavg") == 1, values


async def test_scheduled_rounds_and_reload(ssh_lab: SshLab, tmp_path: Path) -> None:
    import asyncio

    sshd = ssh_lab.server(ports=2)
    first, second = (f"127.0.0.1:{port}" for port in sshd.ports)
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [second], "labels": {"from": "sd"}}]))
    config = ssh_lab.config([first], modules={"login": {"interval": 0.2}},
                            file_sd=[str(sd)], file_sd_refresh_interval=0.2)
    registry = Registry()
    ssh = SshWorker(config, registry)
    await ssh.start()
    try:
        for _ in range(300):
            if {first, second} <= registry.targets.keys():
                break
            await asyncio.sleep(0.05)
        assert ssh.up_count() == (2, 2)
        assert dict(ssh.target(second).labels) == {"from": "sd"}  # type: ignore[union-attr]
        handshakes = value(results(ssh, first), "hostagent_ssh_handshakes_total")
        sd.write_text("[]")
        st = sd.stat()
        os.utime(sd, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        for _ in range(300):
            if second not in registry.targets:
                break
            await asyncio.sleep(0.05)
        assert second not in registry.targets, "a target removed from file_sd goes"
        await ssh.apply(ssh_lab.config([first, second], modules={"login": {"interval": 0.2}}))
        for _ in range(300):
            if second in registry.targets:
                break
            await asyncio.sleep(0.05)
        assert second in registry.targets
        assert value(results(ssh, first), "hostagent_ssh_handshakes_total") == handshakes, \
            "an unchanged target keeps its connection across a reload"
    finally:
        await ssh.stop()
    assert not registry.targets


@pytest.mark.parametrize("reuse", [True, False])
async def test_several_targets_on_one_server(ssh_lab: SshLab, reuse: bool) -> None:
    sshd = ssh_lab.server(ports=4)
    names = [f"127.0.0.1:{port}" for port in sshd.ports]
    config = ssh_lab.config(names, checks=CHECKS[:1], max_in_flight=2, max_handshakes=1,
                            reuse_connections=reuse)
    async with worker(config) as ssh:
        await ssh.run_once()
        assert ssh.up_count() == (4, 4)


def node_objects(*roots: object) -> int:
    """node_* Metric objects reachable from the roots (classes, modules and code not
    followed: they lead everywhere)."""
    import gc
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
            types.CodeType)
    seen: set[int] = set()
    stack = list(roots)
    found = 0
    while stack and len(seen) < 200_000:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        found += isinstance(obj, Metric) and obj.name.startswith("node_")
        stack.extend(gc.get_referents(obj))
    return found


@pytest.mark.parametrize("on_metrics", [False, True])
async def test_node_series_are_kept_compressed_unless_metrics_carries_them(
        ssh_lab: SshLab, on_metrics: bool) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    config = ssh_lab.config([name], modules={"node": {"enabled": True}},
                            node_on_metrics=on_metrics)
    registry = Registry()
    async with worker(config, registry) as ssh:
        await ssh.run_once()
        modules = ssh.module_families(name)
        assert modules is not None and len(modules["node"]) > 20
        kept = node_objects(ssh._states[name], registry.targets[name])
        if on_metrics:  # every render of /metrics reads them
            assert kept == len(modules["node"])
        else:  # only /probe and a few others: what the target keeps between rounds is bytes
            assert kept == 0
            assert {f.name for f in registry.targets[name].families("node")} == {
                f.name for f in modules["node"]}
