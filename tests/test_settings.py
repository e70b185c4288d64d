from pathlib import Path

import pytest

from meshcall import settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    for s in settings.SETTINGS:
        assert f"`{s.option}`" in README, f"{s.option} is not in the README's settings section"
        assert f"`{s.env}`" in README, f"{s.env} is not in the README"
    assert settings.markdown_table() in README, "README settings table is stale: paste settings.markdown_table()"


def test_help_lists_every_setting_with_its_env_var() -> None:
    text = settings.build_parser().format_help()
    for s in settings.SETTINGS:
        assert s.option in text and s.env in text


def test_defaults() -> None:
    c = settings.load([], environ={})
    assert (c.host, c.port, c.http_port, c.max_peers, c.log_level) == ("::", 8443, 8080, 6, "INFO")
    assert c.cert is None and c.key is None and c.no_turn is False
    assert (c.mdns_name, c.no_mdns) == ("meshcall.local", False)


def test_flags_win_over_environment() -> None:
    env = {"MESHCALL_PORT": "9443", "MESHCALL_MAX_PEERS": "4", "MESHCALL_NO_TURN": "yes"}
    c = settings.load([], environ=env)
    assert (c.port, c.max_peers, c.no_turn) == (9443, 4, True)
    assert settings.load(["--port", "7443"], environ=env).port == 7443


@pytest.mark.parametrize("argv,env,message", [
    (["--port", "70000"], {}, "--port: 70000 is not a port number"),
    (["--max-peers", "0"], {}, "--max-peers: 0 must be at least 1"),
    ([], {"MESHCALL_PORT": "abc"}, "MESHCALL_PORT: invalid literal"),
    (["--log-level", "loud"], {}, "--log-level: 'loud' is not one of"),
    ([], {"MESHCALL_RELAY_ONLY": "maybe"}, "MESHCALL_RELAY_ONLY: 'maybe' is not a boolean"),
    (["--cert", "c.pem"], {}, "--cert needs --key too"),
    (["--key", "k.pem"], {}, "--key needs --cert too"),
    (["--relay-only", "--no-turn"], {}, "--relay-only needs the built-in TURN server"),
    (["--mdns-name", "a.b.local"], {}, "--mdns-name: 'a.b.local' is not a .local name"),
    (["--wifi-password", "x"], {}, "--wifi-password needs --wifi-ssid"),
    ([], {"MESHCALL_ACCESS_CODE": "  "}, "--access-code must be 1 to 128 characters, not blank"),
    (["--access-code", "x" * 129], {}, "--access-code must be 1 to 128 characters"),
])
def test_bad_values_are_one_clear_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(settings.ConfigError) as err:
        settings.load(argv, environ=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_both_cert_and_key_is_fine() -> None:
    c = settings.load(["--cert", "c.pem", "--key", "k.pem"], environ={})
    assert c.cert == Path("c.pem") and c.key == Path("k.pem")
