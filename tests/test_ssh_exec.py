"""`hostagent ssh exec`, the real command, over several real sshd targets."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from agent.ssh.exec_cmd import Console
from tests.sshd import SshLab, user_key


def hostagent_ssh_exec(lab: SshLab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "ssh", "exec", "-i", str(lab.key.path),
         "--known-hosts", str(lab.known_hosts), "--timeout", "30", *args],
        capture_output=True, text=True, timeout=120)


def test_runs_on_every_host_with_prefixed_output(ssh_lab: SshLab) -> None:
    one = ssh_lab.server(ports=2)
    two = ssh_lab.server()
    hosts = [f"127.0.0.1:{p}" for p in one.ports] + [f"{two.user}@127.0.0.1:{two.ports[0]}"]
    args = [arg for host in hosts for arg in ("-H", host)]
    result = hostagent_ssh_exec(ssh_lab, *args, "-j", "2", "--", "echo", "out;", "echo err >&2")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(f"[{h}] out" for h in hosts)
    lines = result.stderr.splitlines()
    for host in hosts:
        assert f"[{host}] err" in lines
        assert any(line.startswith(host) and " ok " in line and "exit 0" in line
                   for line in lines)
    assert lines[-1] == "3 hosts: 3 ok, 0 failed"
    assert "\r" not in result.stderr, "no progress line when stderr is not a terminal"


def test_failures_are_summarised_and_exit_non_zero(ssh_lab: SshLab, tmp_path: Path) -> None:
    good = ssh_lab.server()
    untrusted = ssh_lab.server(trusted=False)
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(f"# fleet\n127.0.0.1:{good.ports[0]}\n\n"
                          f"127.0.0.1:{untrusted.ports[0]}\n127.0.0.1:1\n")
    result = hostagent_ssh_exec(ssh_lab, "--hosts-file", str(hosts_file), "--", "exit 5")
    assert result.returncode == 1
    summary = {line.split()[0]: line for line in result.stderr.splitlines()
               if line.startswith("127.0.0.1")}
    assert "FAILED  exit 5" in summary[f"127.0.0.1:{good.ports[0]}"]
    assert "FAILED  host_key" in summary[f"127.0.0.1:{untrusted.ports[0]}"]
    assert "FAILED  connect" in summary["127.0.0.1:1"]
    assert "Connection refused" in summary["127.0.0.1:1"]
    insecure = hostagent_ssh_exec(ssh_lab, "-H", f"127.0.0.1:{untrusted.ports[0]}",
                                  "--insecure-ignore-host-keys", "--", "true")
    assert insecure.returncode == 0 and "host keys are NOT verified" in insecure.stderr


def test_file_sd_hosts_file_group_and_auth(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server(ports=2)
    hosts = [f"127.0.0.1:{p}" for p in sshd.ports]
    sd = tmp_path / "fleet.json"
    sd.write_text(json.dumps([{"targets": hosts, "labels": {"role": "db"}}]))
    result = hostagent_ssh_exec(ssh_lab, "--hosts-file", str(sd), "--group", "--",
                                "echo a; echo b")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for host in hosts:  # each host's output together, after its header
        start = lines.index(f"[{host}]")
        assert lines[start + 1:start + 3] == ["a", "b"]
    stranger = user_key(tmp_path, "stranger")
    denied = subprocess.run(
        [sys.executable, "-m", "agent", "ssh", "exec", "-i", str(stranger.path),
         "--known-hosts", str(ssh_lab.known_hosts), "-H", hosts[0], "--", "true"],
        capture_output=True, text=True, timeout=120)
    assert denied.returncode == 1 and "FAILED  auth" in denied.stderr


def test_usage_errors_exit_2(ssh_lab: SshLab, tmp_path: Path) -> None:
    assert hostagent_ssh_exec(ssh_lab, "--", "true").returncode == 2
    bad = hostagent_ssh_exec(ssh_lab, "-H", "db1:99999", "--", "true")
    assert bad.returncode == 2 and "invalid port" in bad.stderr
    missing = hostagent_ssh_exec(ssh_lab, "--hosts-file", str(tmp_path / "nope"), "--", "true")
    assert missing.returncode == 2 and "hosts:" in missing.stderr


def test_progress_line_only_on_a_terminal() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    console = Console(2, out, err, tty=True)
    console.write("stdout", b"[a] line")
    console.finished(True)
    console.end()
    assert out.getvalue() == b"[a] line\n"
    assert b"1/2 hosts done, 0 failed" in err.getvalue()
    assert err.getvalue().endswith(b"\r\x1b[K"), "cleared at the end"
    quiet = io.BytesIO()
    plain = Console(1, io.BytesIO(), quiet, tty=False)
    plain.finished(False)
    plain.end()
    assert quiet.getvalue() == b""
