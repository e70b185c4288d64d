"""Listening on both address families, and a machine without IPv6."""

from __future__ import annotations

import errno
import logging
import socket
import pytest

from meshcall import listen


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def test_every_address_means_both_families_on_one_port() -> None:
    socks = listen.Listener("::").bind(0, "HTTPS", "--port")
    try:
        families = sorted(s.family for s in socks)
        assert families == [socket.AF_INET, socket.AF_INET6]
        assert len({s.getsockname()[1] for s in socks}) == 1
    finally:
        close_all(socks)


def test_ipv4_wildcard_stays_ipv4() -> None:
    socks = listen.Listener("0.0.0.0").bind(0, "HTTPS", "--port")
    try:
        assert [s.family for s in socks] == [socket.AF_INET]
    finally:
        close_all(socks)


def test_no_ipv6_is_one_warning_and_ipv4_keeps_working(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    real = listen._wildcard_socket

    def no_ipv6(family: socket.AddressFamily, port: int) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, port)

    monkeypatch.setattr(listen, "_wildcard_socket", no_ipv6)
    listener = listen.Listener("::")
    with caplog.at_level(logging.WARNING, logger="meshcall.listen"):
        https = listener.bind(0, "HTTPS", "--port")
        http = listener.bind(0, "HTTP", "--http-port")
    try:
        assert [s.family for s in https + http] == [socket.AF_INET, socket.AF_INET]
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "serving IPv4 only" in warnings[0]
        assert listener.ipv6_failed and all(":" not in a for a in listener.addresses())
    finally:
        close_all(https + http)


def test_ipv4_port_in_use_is_fatal_with_the_flag_to_change() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(listen.BindError, match=f"HTTPS port {port} on 0.0.0.0 is already in use.*--port"):
            listen.Listener("::").bind(port, "HTTPS", "--port")
