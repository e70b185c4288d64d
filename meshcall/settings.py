"""Every setting in one table: it drives the CLI, the MESHCALL_* environment
variables and the README's settings section."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import __version__

ENV_PREFIX = "MESHCALL_"


@dataclass(frozen=True)
class Setting:
    name: str  # attribute name; the flag is --name-with-dashes
    default: Any
    help: str
    kind: Callable[[str], Any] = str
    flag: bool = False  # a boolean switch (--no-turn style)
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (0-65535)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} must be at least 1")
    return value


def _level(text: str) -> str:
    value = text.upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{text!r} is not one of debug, info, warning, error")
    return value


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (1/0, true/false, yes/no, on/off)")


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "0.0.0.0", "Address to listen on for HTTPS and HTTP (0.0.0.0 = every IPv4 address, :: = every address).", metavar="ADDR"),
    Setting("port", 8443, "HTTPS port: the meeting page and signaling.", _port, metavar="PORT"),
    Setting("http_port", 8080, "Plain-HTTP port for the onboarding page (CA certificate download) and redirects to HTTPS; 0 turns it off.", _port, metavar="PORT"),
    Setting("data_dir", None, "Where the certificate authority, the certificate and the TURN secret are kept (created with mode 0700). Default: the per-user data directory.", Path, metavar="DIR"),
    Setting("cert", None, "Bring your own certificate (PEM, chain allowed). Give --key with it.", Path, metavar="FILE"),
    Setting("key", None, "The private key (PEM) for --cert.", Path, metavar="FILE"),
    Setting("max_peers", 6, "Most people in one room; a mesh call gets heavy beyond 6.", _positive, metavar="N"),
    Setting("turn_port", 3478, "STUN/TURN port (UDP and TCP) of the built-in relay.", _port, metavar="PORT"),
    Setting("no_turn", False, "Do not run the built-in STUN/TURN server.", _bool, flag=True),
    Setting("turn_secret", None, "Shared secret for TURN credentials (default: generated once and kept in the data dir).", metavar="SECRET"),
    Setting("relay_only", False, "Make every browser send media through the built-in TURN relay (for networks that keep clients apart).", _bool, flag=True),
    Setting("relay_min_port", 49160, "Lowest UDP port for relayed media.", _port, metavar="PORT"),
    Setting("relay_max_port", 49999, "Highest UDP port for relayed media.", _port, metavar="PORT"),
    Setting("turn_credential_ttl", 86400, "Seconds a TURN username handed to a page is valid for starting a relay; pages get fresh ones at half that.", _positive, metavar="SECONDS"),
    Setting("turn_allow_loopback", False, "Let the TURN relay send to loopback addresses (for tests on one machine only).", _bool, flag=True),
    Setting("resume_grace", 8.0, "Seconds a peer that dropped uncleanly keeps its place (and id) so its page can resume.", float, metavar="SECONDS"),
    Setting("proxy", False, "Run behind a reverse proxy that terminates TLS: serve plain HTTP on --port, trust X-Forwarded-* headers, no onboarding port.", _bool, flag=True),
    Setting("log_level", "INFO", "Logging level: debug, info, warning or error.", _level, metavar="LEVEL"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass
class Config:
    host: str = "0.0.0.0"
    port: int = 8443
    http_port: int = 8080
    data_dir: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    max_peers: int = 6
    turn_port: int = 3478
    no_turn: bool = False
    turn_secret: str | None = None
    relay_only: bool = False
    relay_min_port: int = 49160
    relay_max_port: int = 49999
    turn_credential_ttl: int = 86400
    turn_allow_loopback: bool = False
    resume_grace: float = 8.0
    proxy: bool = False
    log_level: str = "INFO"


class ConfigError(ValueError):
    """A setting has a bad value; the message is meant for the user."""


def _check_table_matches_config() -> None:
    names = {f.name for f in fields(Config)}
    if names != set(BY_NAME):
        raise RuntimeError(f"settings table and Config differ: {sorted(names ^ set(BY_NAME))}")
    # Config(...) built directly (tests, embedding) must get the defaults the CLI documents.
    drifted = [f.name for f in fields(Config) if f.default != BY_NAME[f.name].default]
    if drifted:
        raise RuntimeError(f"settings table and Config defaults differ: {drifted}")


_check_table_matches_config()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshcall",
        description="Video meetings for everyone on this network: open the printed address in a browser.",
        epilog="Every setting can also come from an environment variable MESHCALL_<NAME>, e.g. MESHCALL_PORT=443.",
    )
    for s in SETTINGS:
        default_text = "" if s.default is None or s.flag else f" (default: {s.default})"
        env_text = f" [env {s.env}]"
        if s.flag:
            parser.add_argument(s.option, dest=s.name, action="store_const", const=True, default=None,
                                help=s.help + env_text)
        else:
            parser.add_argument(s.option, dest=s.name, default=None, metavar=s.metavar,
                                help=s.help + default_text + env_text)
    parser.add_argument("--version", action="version", version=f"meshcall {__version__}")
    return parser


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """CLI flags win over environment variables, which win over defaults.

    Raises SystemExit(2) for an unknown flag (argparse) and ConfigError for a bad value."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = getattr(args, s.name)
        source = s.option
        if raw is None and s.env in environ:
            raw, source = environ[s.env], s.env
        if raw is None:
            values[s.name] = s.default
            continue
        if raw is True:  # a switch given on the command line
            values[s.name] = True
            continue
        try:
            values[s.name] = s.kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    if (config.cert is None) != (config.key is None):
        given, missing = ("--cert", "--key") if config.cert is not None else ("--key", "--cert")
        raise ConfigError(f"{given} needs {missing} too: give both (your own certificate) or neither (meshcall makes one)")
    if config.relay_min_port > config.relay_max_port:
        raise ConfigError("--relay-min-port must not be above --relay-max-port")
    if config.relay_only and config.no_turn:
        raise ConfigError("--relay-only needs the built-in TURN server: drop --no-turn")


def markdown_table() -> str:
    """The README's settings section is this table, kept in sync by a test."""
    lines = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "off" if s.flag else ("—" if s.default is None else f"`{s.default}`")
        lines.append(f"| `{s.option}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)
