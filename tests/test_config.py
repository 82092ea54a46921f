from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import pytest

from agent.cli import main, parser
from agent.collectors.catalog import BY_NAME
from agent.config import CollectorsConfig, Config, ConfigError, load, parse_listen_address
from agent.flags import overrides
from agent.remote_write.settings import EndpointConfig
from agent.webconfig import WebConfigFile


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostagent.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    return info.value.problems


def test_defaults_need_no_file() -> None:
    config = load(None)
    assert config.web.listen_address == ":9110"
    assert config.collectors.cpu.enabled and config.collectors.cpu.interval == 15
    assert config.collectors.cpu.effective_timeout < config.collectors.cpu.interval


def test_every_collector_has_settings_and_a_factory() -> None:
    assert set(CollectorsConfig.model_fields) == set(BY_NAME)
    for name, declaration in BY_NAME.items():
        module, _, function = declaration.factory.partition(":")
        assert callable(getattr(importlib.import_module(module), function or "create")), name


def test_collectors_share_their_settings_classes() -> None:
    """One class per settings model and default, not one per collector: each model class
    costs its validator, serializer and schema in memory."""
    defaults = Config().collectors
    for name, declaration in BY_NAME.items():
        settings = defaults.get(name)
        assert settings.enabled is declaration.default, name
        assert isinstance(settings, declaration.settings), name
    kinds = {(d.settings, d.default) for d in BY_NAME.values()}
    assert len({type(defaults.get(name)) for name in BY_NAME}) == len(kinds) < len(BY_NAME)


def test_defaults_made_without_validation_equal_validated_ones() -> None:
    """The sections' defaults are made with model_construct (no validator of their own is
    built for them): given explicitly, every value validates to the same configuration."""
    defaults = Config()
    assert Config.model_validate(defaults.model_dump(by_alias=True)) == defaults
    endpoint = {"url": "https://127.0.0.1/api/v1/write"}
    explicit = EndpointConfig.model_validate(endpoint).model_dump(by_alias=True)
    assert EndpointConfig.model_validate(explicit) == EndpointConfig.model_validate(endpoint)
    assert WebConfigFile.model_validate({}) == WebConfigFile.model_validate(
        {"http_server_config": {}})


def test_a_configuration_pickles(tmp_path: Path) -> None:
    config = load(write(tmp_path, "collectors:\n  ethtool: {enabled: true}\n"
                                  "  cpu: {enabled: false, info: true}\n"))
    assert pickle.loads(pickle.dumps(config)) == config


def test_valid_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, """
web: {listen_address: "127.0.0.1:9999", max_requests: 3}
collectors:
  cpu: {interval: 5, timeout: 2}
  memory: {enabled: false}
scheduler: {jitter: 0}
logging: {level: debug}
"""))
    assert config.web.max_requests == 3
    assert config.collectors.cpu.effective_timeout == 2
    assert not config.collectors.meminfo.enabled


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")) == Config()


@pytest.mark.parametrize(("text", "expected"), [
    ("collectors: {cpu: {interval: 0}}", "collectors.cpu.interval: must be greater than 0"),
    ("collectors: {cpu: {interval: -1}}", "collectors.cpu.interval: must be greater than 0"),
    ("collectors: {cpu: {intervall: 5}}", "collectors.cpu.intervall: unknown field"),
    ("collectors: {nosuch: {}}", "collectors.nosuch: unknown field"),
    ("webb: {}", "webb: unknown field"),
    ("collectors: {cpu: {interval: 5, timeout: 6}}",
     "collectors.cpu: timeout (6.0) must not exceed interval (5.0)"),
    ("web: {listen_address: nonsense}", "web.listen_address: expected HOST:PORT"),
    ("web: {listen_address: '::1:80'}", "web.listen_address: an IPv6 host needs brackets"),
    ("web: {max_requests: many}", "web.max_requests: must be a valid integer"),
    ("logging: {level: loud}", "logging.level: must be 'debug', 'info', 'warning' or 'error'"),
    ("collectors: {diskstats: {device_exclude: '('}}",
     "collectors.diskstats.device_exclude: invalid regular expression"),
    ("collectors: {netdev: {device_include: a, device_exclude: b}}",
     "collectors.netdev: device_include and device_exclude are mutually exclusive"),
])
def test_invalid_values_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(expected), found


def test_every_problem_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "collectors: {cpu: {interval: 0}, memory: {enabled: maybe}}\nx: 1")
    assert len(found) == 3


@pytest.mark.parametrize(("text", "expected"), [
    ("web: [", "invalid YAML at line"),
    ("- a\n- b", "the top level must be a mapping"),
])
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    [found] = problems(tmp_path, text)
    assert expected in found and "hostagent.yml" in found


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yml")
    assert "absent.yml: cannot read" in info.value.problems[0]


@pytest.mark.parametrize(("address", "expected"), [
    (":9110", (None, 9110)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:80", ("::1", 80)),
])
def test_listen_address(address: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen_address(address) == expected


def test_flags_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, "web: {listen_address: '127.0.0.1:1', max_requests: 3}")
    args = parser().parse_args(["run", "--config", str(path), "--web.listen-address",
                                "127.0.0.1:2", "--no-collector.cpu"])
    config = load(args.config, overrides(args))
    assert config.web.listen_address == "127.0.0.1:2"
    assert config.web.max_requests == 3
    assert not config.collectors.cpu.enabled and config.collectors.meminfo.enabled


def test_disable_defaults_keeps_only_named_collectors() -> None:
    args = parser().parse_args(["run", "--collector.disable-defaults", "--collector.memory"])
    config = load(None, overrides(args))
    enabled = {name for name in BY_NAME if config.collectors.get(name).enabled}
    assert enabled == {"meminfo"}


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "collectors: {cpu: {interval: 5}}")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("collectors: {cpu: {interval: 0}}\nfoo: 1\n")
    assert main(["check-config", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"{bad}: collectors.cpu.interval: must be greater than 0",
                     f"{bad}: foo: unknown field"]


@pytest.mark.parametrize("argv", [["--bogus"], ["run", "--web.max-requests", "x"],
                                  ["--collector.nosuch"], ["check-config"], ["frobnicate"]])
def test_bad_usage_exits_2_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: hostagent" in capsys.readouterr().err


def test_device_include_replaces_the_default_exclude(tmp_path: Path) -> None:
    config = load(write(tmp_path, "collectors: {diskstats: {device_include: '^sd'}}"))
    assert config.collectors.diskstats.device_exclude is None
    assert load(None).collectors.diskstats.device_exclude is not None


def test_mount_timeout_stays_below_the_collector_timeout(tmp_path: Path) -> None:
    short = load(write(tmp_path, "collectors: {filesystem: {interval: 2}}"))
    assert short.collectors.filesystem.effective_mount_timeout == 0.8
    assert load(None).collectors.filesystem.effective_mount_timeout == 5
    [found] = problems(tmp_path, "collectors: {filesystem: {interval: 5, mount_timeout: 5}}")
    assert found.startswith("collectors.filesystem: mount_timeout (5.0) must be below")


def test_a_byte_that_is_not_utf8_is_one_line_that_quotes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.pki import bcrypt_hash

    secret = bcrypt_hash("hunter2")
    web = tmp_path / "web.yml"
    web.write_bytes(b"basic_auth_users:\n  alice: " + secret.encode() + b"\n# caf\xe9\n")
    config = write(tmp_path, f"web: {{config_file: {web}}}\n")
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == f"{web}: not UTF-8: byte 0xe9 at line 3\n"

    config.write_bytes(b"web: {max_requests: 3}\n\xff\n")
    assert main(["check-config", str(config)]) == 2
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"{config}: not UTF-8: byte 0xff at line 2\n" * 2
