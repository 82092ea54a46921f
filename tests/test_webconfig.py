"""The web configuration file: what it accepts, what it refuses (one line naming the key), the
real `promtool check web-config` agreeing on the same files, and the exit codes."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from agent import cli, webconfig
from agent.config import ConfigError
from tests.conftest import require_tool
from tests.pki import CA, bcrypt_hash, encrypted_copy
from tests.test_process import COMMAND

PASSWORD = "correct horse battery staple"


@pytest.fixture
def pki(tmp_path: Path) -> CA:
    return CA(tmp_path)


def write(directory: Path, content: dict[str, object], name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(content))
    return path


def tls(ca: CA, **extra: object) -> dict[str, object]:
    server = ca.issue("server")
    return {"cert_file": server.cert.name, "key_file": server.key.name, **extra}


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        webconfig.load(path)
    return caught.value.problems


def test_no_file_is_plain_http_without_auth() -> None:
    settings = webconfig.load(None)
    assert not settings.tls and not settings.users and not settings.headers


def test_full_file(pki: CA) -> None:
    hashed = bcrypt_hash(PASSWORD)
    path = write(pki.directory, {
        "tls_server_config": tls(pki, client_auth_type="RequireAndVerifyClientCert",
                                 client_ca_file="ca.crt", min_version="TLS13"),
        "http_server_config": {"headers": {"X-Frame-Options": "deny",
                                           "Strict-Transport-Security": "max-age=31536000"},
                               "http2": False},
        "basic_auth_users": {"prometheus": hashed, "alice": bcrypt_hash("other", cost=5)},
    })
    settings = webconfig.load(path)
    assert settings.context is not None
    assert settings.context.verify_mode == ssl.CERT_REQUIRED
    assert settings.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert settings.context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert dict(settings.users) == {"prometheus": hashed.encode(),
                                    "alice": settings.users["alice"]}
    assert settings.decoy.startswith(b"$2b$05$"), "the decoy costs as much as the dearest hash"
    assert dict(settings.headers)["X-Frame-Options"] == "deny"
    # Relative paths are relative to the file, as in the exporter-toolkit.
    assert settings.watched == (path, pki.directory / "server.crt",
                                pki.directory / "server.key", pki.directory / "ca.crt")
    assert hashed not in repr(settings)


def test_defaults_floor_tls12_and_no_client_certificates(pki: CA) -> None:
    settings = webconfig.load(write(pki.directory, {"tls_server_config": tls(pki)}))
    assert settings.context is not None
    assert settings.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert settings.context.verify_mode == ssl.CERT_NONE


def test_auth_only_and_empty_sections(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\nhttp_server_config:\nbasic_auth_users:\n"
                    f"  u: '{bcrypt_hash(PASSWORD)}'\n")
    settings = webconfig.load(path)
    assert not settings.tls and set(settings.users) == {"u"}


@pytest.mark.parametrize(("content", "expected"), [
    ({"rate_limit": {"burst": 1, "interval": "1s"}},
     "rate_limit: not supported by hostagent yet (request rate limiting)"),
    ({"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}},
     "tls_server_config.cipher_suites: not supported by hostagent yet (choosing cipher suites)"),
    ({"tls_server_config": {"curve_preferences": ["X25519"]}},
     "tls_server_config.curve_preferences: not supported by hostagent yet (choosing curves)"),
    ({"tls_server_config": {"client_allowed_sans": ["a"]}},
     "tls_server_config.client_allowed_sans: not supported by hostagent yet"),
    ({"tls_server_config": {"cert": "PEM"}},
     "tls_server_config.cert: not supported by hostagent yet (an inline certificate; "
     "use cert_file)"),
    ({"tls_server_config": {"client_auth_type": "RequireAnyClientCert"}},
     "tls_server_config.client_auth_type: RequireAnyClientCert is not supported by hostagent"),
    ({"tls_server_config": {"client_auth_type": "RequestClientCert"}},
     "tls_server_config.client_auth_type: RequestClientCert is not supported by hostagent"),
    ({"http_server_config": {"http2": True}},
     "http_server_config.http2: HTTP/2 is not supported by hostagent yet"),
    ({"tls_server_config": {"min_version": "TLS11"}},
     "tls_server_config.min_version: TLS11 is below TLS12, the oldest version hostagent serves"),
    ({"tls_server_config": {"max_version": "TLS10"}},
     "tls_server_config.max_version: TLS10 is below TLS12"),
    ({"tls_server_config": {"min_version": "TLS13", "max_version": "TLS12"}},
     "tls_server_config: min_version must not be above max_version"),
    ({"tls_server_config": {"min_version": "SSL3"}},
     "tls_server_config.min_version: must be TLS12 or TLS13"),
    ({"tls_server_config": {"client_auth_type": "Sometimes"}},
     "tls_server_config.client_auth_type: must be one of NoClientCert, "
     "VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
    ({"tls_server_config": {"client_auth_type": "RequireAndVerifyClientCert"}},
     "tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
    ({"tls_server_config": {"client_ca_file": "ca.crt"}},
     "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert"),
    ({"tls_server_config": {"cert_filee": "x"}}, "tls_server_config.cert_filee: unknown field"),
    ({"basic_auth_user": {}}, "basic_auth_user: unknown field"),
    ({"http_server_config": {"headers": {"X-Powered-By": "me"}}},
     "http_server_config.headers: 'X-Powered-By' cannot be configured"),
    ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     "http_server_config.headers: X-Frame-Options must be one of deny, sameorigin"),
    ({"basic_auth_users": {"u": "plaintext"}},
     "basic_auth_users: user 'u': the password must be a bcrypt hash"),
    ({"basic_auth_users": {"a:b": "x"}}, "basic_auth_users: user 'a:b': a user name must be"),
])
def test_refused_with_one_line_naming_the_key(pki: CA, content: dict[str, object],
                                              expected: str) -> None:
    if "tls_server_config" in content:
        section = content["tls_server_config"]
        assert isinstance(section, dict)
        content = {**content, "tls_server_config": {**tls(pki), **section}}
    path = write(pki.directory, content)
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: {expected}"), found


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, {"rate_limit": {}, "basic_auth_users": {"u": "x"}, "x": 1})
    assert len(problems(path)) == 3


def test_unreadable_and_invalid_files(pki: CA, tmp_path: Path) -> None:
    assert problems(tmp_path / "missing.yml") == [
        f"{tmp_path / 'missing.yml'}: cannot read: No such file or directory"]
    other = CA(tmp_path, "other").issue("other")
    server = pki.issue("server")
    cases = {
        "cert_file: missing.crt": "tls_server_config.cert_file: cannot read "
                                  f"{pki.directory / 'missing.crt'}: No such file or directory",
        f"cert_file: {server.key}": f"tls_server_config.cert_file: no PEM certificate in "
                                    f"{server.key}",
        f"key_file: {server.cert}": f"tls_server_config.key_file: no PEM private key in "
                                    f"{server.cert}",
        f"key_file: {other.key}": f"tls_server_config.cert_file: cannot use {server.cert} with "
                                  f"{other.key}: key values mismatch",
        f"key_file: {encrypted_copy(server, tmp_path / 'enc.key')}":
            f"tls_server_config.key_file: {tmp_path / 'enc.key'} is encrypted",
        f"client_ca_file: {server.key}": f"tls_server_config.client_ca_file: no PEM "
                                         f"certificate in {server.key}",
    }
    for override, expected in cases.items():
        key, value = override.split(": ", 1)
        section = {"cert_file": str(server.cert), "key_file": str(server.key), key: value}
        if key == "client_ca_file":
            section["client_auth_type"] = "VerifyClientCertIfGiven"
        path = write(pki.directory, {"tls_server_config": section})
        found = problems(path)
        assert found == [f"{path}: {expected}"] or found[0].startswith(f"{path}: {expected}"), \
            found
        assert server.key_pem.decode().splitlines()[1] not in "\n".join(found)


def test_promtool_agrees_on_good_and_bad_files(pki: CA, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    good = write(pki.directory, {
        "tls_server_config": tls(pki, client_auth_type="RequireAndVerifyClientCert",
                                 client_ca_file="ca.crt", min_version="TLS12",
                                 max_version="TLS13"),
        "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
    })
    webconfig.load(good)
    checked = subprocess.run([promtool, "check", "web-config", str(good)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bad_files = [
        write(tmp_path, {"basic_auth_users": {"prometheus": "plaintext"}}, "bad1.yml"),
        write(tmp_path, {"tls_server_config": {"cert_file": str(pki.path)}}, "bad2.yml"),
        write(tmp_path, {"http_server_config": {"headers": {"Server": "x"}}}, "bad3.yml"),
        write(tmp_path, {"unknown_key": 1}, "bad4.yml"),
    ]
    for bad in bad_files:
        problems(bad)
        checked = subprocess.run([promtool, "check", "web-config", str(bad)],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode != 0, (bad.read_text(), checked.stdout)


def test_check_config_validates_the_web_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    web = write(tmp_path, {"basic_auth_users": {"u": "plaintext"}})
    config = tmp_path / "hostagent.yml"
    config.write_text(f"web: {{config_file: '{web}'}}\n")
    assert cli.main(["check-config", str(config)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"{web}: basic_auth_users: user 'u'") and "plaintext" not in err
    web.write_text(f"basic_auth_users: {{u: '{bcrypt_hash(PASSWORD)}'}}\n")
    assert cli.main(["check-config", str(config)]) == cli.EXIT_OK


@pytest.mark.parametrize("kind", ["invalid", "unreadable tls file"])
def test_agent_with_a_bad_web_config_exits_2_with_one_line(pki: CA, kind: str) -> None:
    if kind == "invalid":
        path = write(pki.directory, {"tls_server_config": tls(pki, min_version="TLS10")})
        expected = f"{path}: tls_server_config.min_version: TLS10 is below TLS12"
    else:
        path = write(pki.directory, {"tls_server_config": tls(pki)})
        key = pki.directory / "server.key"
        key.chmod(0)
        try:
            key.read_bytes()
        except PermissionError:
            pass
        else:  # root reads anything: a missing file is just as unreadable
            key.unlink()
        expected = f"{path}: tls_server_config.key_file: cannot read"
    result = subprocess.run([*COMMAND, "--web.listen-address", "127.0.0.1:0",
                             "--web.config.file", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
