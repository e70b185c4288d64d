"""TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from meshcall.turn.credentials import rest_credentials, rest_password, username_expired, username_user


def test_rest_credentials_shape_and_password() -> None:
    username, password = rest_credentials(b"s3cret", "peer-7", 600, now=1_700_000_000.5)
    assert username == "1700000600:peer-7"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected == rest_password(b"s3cret", username)
    assert username_user(username) == "peer-7"


def test_username_expiry() -> None:
    assert not username_expired("1700000600:x", 1_700_000_000)
    assert username_expired("1700000600:x", 1_700_000_601)
    assert username_expired("notatime:x", 0)
    assert username_expired("", 0)
    assert not username_expired("1700000600", 1_700_000_000)


def test_rest_credentials_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        rest_credentials(b"s", "a:b", 60)
    with pytest.raises(ValueError):
        rest_credentials(b"s", "a", 0)
