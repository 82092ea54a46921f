"""SSH targets: addresses, configuration errors, file_sd re-reading and sharding."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.addresses import split_address
from agent.config import ConfigError, SshConfig, build
from agent.ssh.targets import TargetSource, hashmod, in_shard, make_target


@pytest.mark.parametrize(("text", "expected"), [
    ("db1", (None, "db1", None)),
    ("db1:2222", (None, "db1", 2222)),
    ("deploy@db1:2222", ("deploy", "db1", 2222)),
    ("deploy@10.0.0.1", ("deploy", "10.0.0.1", None)),
    ("[::1]:22", (None, "::1", 22)),
    ("root@[fe80::1]", ("root", "fe80::1", None)),
    ("::1", (None, "::1", None)),
])
def test_split_address(text: str, expected: tuple[str | None, str, int | None]) -> None:
    assert split_address(text) == expected


@pytest.mark.parametrize("text", ["", "@db1", "db1:0", "db1:99999", "db1:ssh", "[::1", "a b",
                                  "[::1]x"])
def test_split_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_address(text)


def test_target_settings_and_overrides() -> None:
    defaults = SshConfig(user="monitor", port=2200, key_files=[Path("/k/default")])
    plain = make_target("db1", {"role": "db", "__meta_x": "hidden"}, defaults)
    assert (plain.user, plain.port, plain.key_files) == ("monitor", 2200, (Path("/k/default"),))
    assert plain.labels == (("role", "db"),)
    written = make_target("ops@db2:2222", {"__ssh_key_file__": "/k/db2"}, defaults)
    assert (written.user, written.port, written.key_files) == ("ops", 2222, (Path("/k/db2"),))
    inline = make_target("db3", {}, defaults, user="x", port=22, key_file=Path("/k/3"))
    assert (inline.user, inline.port, inline.key_files) == ("x", 22, (Path("/k/3"),))


@pytest.mark.parametrize(("ssh", "expected"), [
    ({"shard": "3/3"}, 'ssh.shard: expected "i/n" with 0 <= i < n'),
    ({"shard": "a/b"}, "ssh.shard: expected"),
    ({"targets": ["db1", {"target": "db1"}]}, "ssh: duplicate target names: db1"),
    ({"checks": [{"name": "a", "command": "true"}, {"name": "a", "command": "false"}]},
     "ssh: duplicate check names: a"),
    ({"targets": [{"target": "db1", "labels": {"bad-name": "x"}}]},
     "ssh.targets.0.labels: invalid label name 'bad-name'"),
    ({"targets": [{"target": "db1", "labels": {"target": "x"}}]}, "target is reserved"),
    ({"targets": ["db1:99999"]}, "ssh.targets.0.target: invalid port"),
    ({"checks": [{"name": "a", "command": "true", "regex": "("}]},
     "ssh.checks.0.regex: invalid regular expression"),
    ({"modules": {"login": {"enabled": False}, "checks": {"enabled": False}}},
     "ssh.modules: enable at least one module"),
    ({"passwords": "no"}, "ssh.passwords: unknown field"),
])
def test_config_errors_name_the_field(ssh: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build({"ssh": ssh})
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_ssh_is_off_by_default_and_verifies_host_keys() -> None:
    config = build({}).ssh
    assert not config.enabled and not config.insecure_ignore_host_keys
    assert config.known_hosts == Path("~/.ssh/known_hosts") and not config.agent


def test_hashmod_is_prometheus_hashmod() -> None:
    """md5 of the value, its last 8 bytes as a big-endian uint64, mod n: checked against
    coreutils' md5sum (and against a real Prometheus in test_ssh_web)."""
    for name in ("db1", "10.0.0.1:22", "deploy@web-07:2222"):
        digest = subprocess.run(["md5sum"], input=name.encode(), capture_output=True,
                                check=True, timeout=10).stdout.split()[0].decode()
        for modulus in (2, 3, 10, 1 << 64):
            assert hashmod(name, modulus) == int(digest[16:], 16) % modulus


def test_shards_split_a_list_with_no_overlap_and_no_gap() -> None:
    names = [f"host-{n:03d}.example:22" for n in range(200)]
    for count in (1, 2, 3, 7):
        shards = [{n for n in names if in_shard(n, f"{i}/{count}")} for i in range(count)]
        assert sum(len(s) for s in shards) == len(names)
        assert set().union(*shards) == set(names)
        if count > 1:
            assert all(shards), "every shard gets some of 200 targets"


def touch_later(path: Path) -> None:
    """A new mtime even on filesystems with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_file_sd_is_read_again_when_it_changes(tmp_path: Path, caplog) -> None:
    json_file = tmp_path / "a.json"
    json_file.write_text(json.dumps([{"targets": ["db1", "db2:2222"], "labels": {"env": "p"}}]))
    yaml_file = tmp_path / "b.yml"
    yaml_file.write_text("- targets: [web1]\n  labels: {role: web}\n- targets: [db1]\n")
    config = SshConfig(enabled=True, targets=["inline1"], file_sd=[str(tmp_path / "*.json"),
                                                                     str(yaml_file)])
    source = TargetSource(config)
    assert source.refresh()
    assert [t.name for t in source.targets] == ["inline1", "db1", "db2:2222", "web1"]
    by_name = {t.name: t for t in source.targets}
    assert by_name["db1"].labels == (("env", "p"),), "the first occurrence wins"
    assert by_name["web1"].labels == (("role", "web"),)
    assert not source.refresh(), "nothing changed"

    yaml_file.write_text("- targets: [web1, web2]\n")
    touch_later(yaml_file)
    assert source.refresh()
    assert [t.name for t in source.targets][-2:] == ["web1", "web2"]

    yaml_file.write_text("- targets: [web1\n")  # broken: the previous targets stay
    touch_later(yaml_file)
    assert not source.refresh()
    assert "web2" in {t.name for t in source.targets}
    assert "cannot read file_sd file" in caplog.text

    (tmp_path / "c.json").write_text(json.dumps([{"targets": ["db9"]}]))
    assert source.refresh(), "a new file matching the glob is picked up"
    assert "db9" in {t.name for t in source.targets}
    json_file.unlink()
    (tmp_path / "c.json").unlink()
    assert source.refresh()
    assert {t.name for t in source.targets} == {"inline1", "web1", "web2"}


@pytest.mark.parametrize(("content", "problem"), [
    ('{"targets": []}', "expected a list"),
    ('[{"targets": "db1"}]', "expected {targets"),
    ('[{"targets": ["db1"], "labels": {"a": 1}}]', "labels must map strings to strings"),
    ('[{"targets": ["db1"], "extra": 1}]', "unknown key 'extra'"),
    ('[{"targets": ["db1:x"]}]', "invalid port"),
    ('[{"targets": ["db1"], "labels": {"target": "x"}}]', "invalid label name 'target'"),
    ('[{"targets": ["db1"], "labels": {"a-b": "x"}}]', "invalid label name 'a-b'"),
])
def test_file_sd_errors(tmp_path: Path, content: str, problem: str) -> None:
    from agent.ssh.targets import parse_target_groups

    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("[", r"\[")):
        parse_target_groups(content, json_format=True)


def test_sharding_applies_to_file_sd_targets(tmp_path: Path) -> None:
    names = [f"10.1.0.{n}" for n in range(50)]
    sd = tmp_path / "all.json"
    sd.write_text(json.dumps([{"targets": names}]))
    kept = []
    for index in range(3):
        source = TargetSource(SshConfig(enabled=True, file_sd=[str(sd)], shard=f"{index}/3"))
        source.refresh()
        kept.append({t.name for t in source.targets})
        assert all(hashmod(t.name, 3) == index for t in source.targets)
    assert sorted(name for shard in kept for name in shard) == sorted(names)
