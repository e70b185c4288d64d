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


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text} must be a number of seconds above 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} must be 0 or more")
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


def _mdns_name(text: str) -> str:
    from .netinfo import alias_label

    return alias_label(text) + ".local"


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "::", "Address to listen on for HTTPS, HTTP and TURN (:: = every IPv4 and IPv6 address, 0.0.0.0 = every IPv4 address).", metavar="ADDR"),
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
    # Relay quotas, sized from the worst case of a full room (see the help texts).
    Setting("turn_max_allocations_per_user", 30, "Most TURN relays one person (one peer id, whatever credentials it holds) may hold at once. In a full room of 6 a page has 5 peer connections, and the browser asks for a relay per connection per TURN address (UDP and TCP): 5 × 2 = 10; an ICE restart or a rebuilt connection asks for new relays before the old ones expire: × 2 = 20; plus 10 for a second network interface or a second restart. With a larger --max-peers use (max-peers − 1) × 4 + 10.", _positive, metavar="N"),
    Setting("turn_max_allocations", 600, "Most TURN relays on the whole appliance at once: 20 per person at the worst case (see --turn-max-allocations-per-user) × 6 people × 5 full rooms relayed at the same time = 600. Each relay holds a port, so keep it below the relay port range (840 ports by default).", _positive, metavar="N"),
    Setting("turn_max_allocations_per_ip", 480, "Most TURN relays held from one client IP address, and most TCP connections to the TURN port from one address. A school behind one NAT shows as one address: 480 lets it relay 4 full rooms at the worst case (4 × 6 people × 20), while any one address leaves a full room's worth (120) of the appliance-wide cap for everyone else.", _positive, metavar="N"),
    Setting("turn_allow_loopback", False, "Let the TURN relay send to loopback addresses (for tests on one machine only).", _bool, flag=True),
    # 20 s: a page gives up a silent socket after 10 s of its own running time and, 4x
    # CPU-throttled on a machine at load 40, was back in 3 s (docs/protocol.md, Liveness).
    Setting("resume_grace", 20.0, "Seconds a peer that dropped uncleanly keeps its place (and id) so its page can resume.", float, metavar="SECONDS"),
    Setting("proxy", False, "Run behind a reverse proxy that terminates TLS: serve plain HTTP on --port, trust X-Forwarded-* headers, no onboarding port.", _bool, flag=True),
    Setting("tls_handshake_timeout", 10.0, "Seconds a new HTTPS connection has to finish its TLS handshake before it is closed.", _seconds, metavar="SECONDS"),
    Setting("header_timeout", 15.0, "Seconds a connection has to send a complete request header, on both ports; also how long an idle keep-alive connection stays open between requests.", _seconds, metavar="SECONDS"),
    Setting("body_timeout", 30.0, "Seconds a client has to send a request body once its header is in.", _seconds, metavar="SECONDS"),
    Setting("max_connections_per_address", 256, "Most connections one address may hold open at once, both ports together (0: no cap). A browser holds one for signaling and up to 6 more while a page loads, so allow about 7 per person who shares one address (a school behind one NAT router): the default serves about 35 people loading at once from one address, and many more in calls. Not applied with --proxy (every connection then comes from the proxy).", _count, metavar="N"),
    Setting("mdns_name", "meshcall.local", "The .local name announced by mDNS besides this machine's own host name (taken: meshcall-2.local is announced instead).", _mdns_name, metavar="NAME"),
    Setting("no_mdns", False, "Do not announce any name by mDNS (multicast DNS).", _bool, flag=True),
    Setting("wifi_ssid", None, "Wi-Fi network name printed as a QR code on the room cards (/card/ROOM).", metavar="SSID"),
    Setting("wifi_password", None, "Wi-Fi password for that QR code (WPA); without it the card shows an open network.", metavar="PASSWORD"),
    Setting("access_code", None, "An appliance-wide code for semi-public networks (guest Wi-Fi): each browser must give it once before it can open a room (it then keeps a cookie for 30 days). Prefer the environment variable: a command line is visible to every user of the machine.", metavar="CODE"),
    Setting("log_level", "INFO", "Logging level: debug, info, warning or error.", _level, metavar="LEVEL"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def default(name: str) -> Any:
    return BY_NAME[name].default


@dataclass
class Config:
    """The settings as typed attributes; every default comes from SETTINGS above."""

    host: str = default("host")
    port: int = default("port")
    http_port: int = default("http_port")
    data_dir: Path | None = default("data_dir")
    cert: Path | None = default("cert")
    key: Path | None = default("key")
    max_peers: int = default("max_peers")
    turn_port: int = default("turn_port")
    no_turn: bool = default("no_turn")
    turn_secret: str | None = default("turn_secret")
    relay_only: bool = default("relay_only")
    relay_min_port: int = default("relay_min_port")
    relay_max_port: int = default("relay_max_port")
    turn_credential_ttl: int = default("turn_credential_ttl")
    turn_max_allocations_per_user: int = default("turn_max_allocations_per_user")
    turn_max_allocations: int = default("turn_max_allocations")
    turn_max_allocations_per_ip: int = default("turn_max_allocations_per_ip")
    turn_allow_loopback: bool = default("turn_allow_loopback")
    resume_grace: float = default("resume_grace")
    proxy: bool = default("proxy")
    tls_handshake_timeout: float = default("tls_handshake_timeout")
    header_timeout: float = default("header_timeout")
    body_timeout: float = default("body_timeout")
    max_connections_per_address: int = default("max_connections_per_address")
    mdns_name: str = default("mdns_name")
    no_mdns: bool = default("no_mdns")
    wifi_ssid: str | None = default("wifi_ssid")
    wifi_password: str | None = default("wifi_password")
    access_code: str | None = default("access_code")
    log_level: str = default("log_level")


class ConfigError(ValueError):
    """A setting has a bad value; the message is meant for the user."""


def _check_table_matches_config() -> None:
    names = {f.name for f in fields(Config)}
    if names != set(BY_NAME):
        raise RuntimeError(f"settings table and Config differ: {sorted(names ^ set(BY_NAME))}")


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
    if config.wifi_password is not None and not config.wifi_ssid:
        raise ConfigError("--wifi-password needs --wifi-ssid (the network's name) too")
    if config.access_code is not None and not 1 <= len(config.access_code.strip()) <= 128:
        raise ConfigError("--access-code must be 1 to 128 characters, not blank")
    if config.relay_only and config.no_turn:
        raise ConfigError("--relay-only needs the built-in TURN server: drop --no-turn")


def markdown_table() -> str:
    """The README's settings section is this table, kept in sync by a test."""
    lines = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "off" if s.flag else ("—" if s.default is None else f"`{s.default}`")
        lines.append(f"| `{s.option}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)
