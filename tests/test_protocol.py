import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from meshcall import errors, protocol
from meshcall.errors import ProtocolError, SignalingError, UserError

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def code_of(frame: str | bytes) -> str:
    with pytest.raises(SignalingError) as err:
        protocol.parse(frame)
    return err.value.code


def test_join_is_normalised() -> None:
    msg = protocol.parse(json.dumps({"type": "join", "room": "Bright-Otter-42", "name": "  Ada \n Lovelace "}))
    assert msg == {"type": "join", "room": "bright-otter-42", "name": "Ada Lovelace", "audio": True,
                   "video": True, "resume": None, "passcode": None}


def test_any_unicode_name_is_kept_as_text() -> None:
    for name in ["Zoë 👩🏽‍💻", "<img src=x onerror=alert(1)>", "東京", "محمد"]:
        assert protocol.parse(json.dumps({"type": "join", "room": "r", "name": name}))["name"] == name


@pytest.mark.parametrize("frame,code", [
    ("not json", "bad-json"),
    ("[1,2]", "bad-json"),
    ('"join"', "bad-json"),
    ("{}", "unknown-type"),
    ('{"type": "hello"}', "unknown-type"),
    ('{"type": 5}', "unknown-type"),
    ('{"type": "join", "room": "r", "name": "a", "from": "p123456"}', "spoofed-sender"),
    ('{"type": "join", "name": "a"}', "bad-field"),
    ('{"type": "join", "room": "r"}', "bad-field"),
    ('{"type": "join", "room": "r", "name": "a", "audio": "yes"}', "bad-field"),
    ('{"type": "join", "room": "r", "name": "a", "resume": 12}', "bad-field"),
    ('{"type": "join", "room": "has space", "name": "a"}', "bad-room"),
    ('{"type": "join", "room": "", "name": "a"}', "bad-room"),
    ('{"type": "join", "room": "' + "x" * 41 + '", "name": "a"}', "bad-room"),
    ('{"type": "join", "room": "r", "name": "   "}', "bad-name"),
    ('{"type": "join", "room": "r", "name": "' + "n" * 41 + '"}', "bad-name"),
    ('{"type": "signal", "description": {"type": "offer", "sdp": ""}}', "bad-field"),
    ('{"type": "signal", "to": "../etc", "candidate": null}', "bad-field"),
    ('{"type": "signal", "to": "p1234567"}', "bad-field"),
    ('{"type": "signal", "to": "p1234567", "candidate": null, "description": {"type": "offer", "sdp": ""}}', "bad-field"),
    ('{"type": "signal", "to": "p1234567", "description": {"type": "rollback", "sdp": ""}}', "bad-field"),
    ('{"type": "signal", "to": "p1234567", "description": {"type": "offer", "sdp": 5}}', "bad-field"),
    ('{"type": "signal", "to": "p1234567", "candidate": {"candidate": 1}}', "bad-field"),
    ('{"type": "signal", "to": "p1234567", "candidate": {"candidate": "c", "sdpMLineIndex": true}}', "bad-field"),
    ('{"type": "media", "audio": true}', "bad-field"),
    ('{"type": "rename", "name": 3}', "bad-field"),
])
def test_bad_frames_have_stable_codes(frame: str, code: str) -> None:
    assert code_of(frame) == code


def test_oversized_fields_and_frames() -> None:
    big_sdp = json.dumps({"type": "signal", "to": "p1234567",
                          "description": {"type": "offer", "sdp": "x" * (protocol.MAX_SDP + 1)}})
    assert code_of(big_sdp) == "bad-field"
    big_cand = json.dumps({"type": "signal", "to": "p1234567", "candidate": {"candidate": "c" * 2000}})
    assert code_of(big_cand) == "bad-field"
    assert code_of("{" + " " * protocol.MAX_FRAME + "}") == "too-large"
    assert code_of("[" * 100000 + "]" * 100000) == "too-large"
    assert code_of("[" * 20000 + "]" * 20000) == "bad-json"  # deep nesting under the size limit


def test_user_and_protocol_errors_are_told_apart() -> None:
    with pytest.raises(UserError):
        protocol.parse('{"type": "join", "room": "a b", "name": "x"}')
    with pytest.raises(ProtocolError):
        protocol.parse("nope")
    assert set(errors.USER_ERRORS).isdisjoint(errors.PROTOCOL_ERRORS)


def test_every_message_type_and_error_code_is_documented_with_an_example() -> None:
    sections = re.split(r"^## ", DOC, flags=re.M)
    client = next(s for s in sections if s.startswith("Client to server"))
    server = next(s for s in sections if s.startswith("Server to client"))
    for kinds, section in ((protocol.CLIENT_TYPES, client), (protocol.SERVER_TYPES, server)):
        for kind in kinds:
            assert f"### {kind}\n" in section, f"message type {kind!r} is not documented"
            body = section.split(f"### {kind}\n", 1)[1].split("\n### ", 1)[0]
            assert f'"type": "{kind}"' in body or kind == "error", f"{kind!r} has no example"
    for code in errors.USER_ERRORS + errors.PROTOCOL_ERRORS:
        assert f"| `{code}` |" in DOC, f"error code {code!r} is not documented"


def _section(kind: str, part: str) -> str:
    side = DOC.split(f"## {part}", 1)[1].split("\n## ", 1)[0]
    return side.split(f"### {kind}\n", 1)[1].split("\n### ", 1)[0]


def _table(body: str) -> dict[str, list[str]]:
    """The rows of the first field table in a section: field name -> the other cells."""
    rows = re.findall(r"^\| `([A-Za-z]+)` \|(.*)\|$", body, flags=re.M)
    return {name: [c.strip() for c in rest.split("|")] for name, rest in rows}


def test_every_client_field_and_its_default_is_documented() -> None:
    for kind, fields in protocol.CLIENT_FIELDS.items():
        documented = {name: cells[1] for name, cells in _table(_section(kind, "Client to server")).items()}
        assert documented == fields, f"{kind}: the doc's field table differs from the parser's"


def test_documented_defaults_are_the_parsers_defaults() -> None:
    minimal = protocol.parse('{"type": "join", "room": "r", "name": "n"}')
    for field, default in protocol.CLIENT_FIELDS["join"].items():
        if default != "required":
            assert json.dumps(minimal[field]) == default, field


def test_every_server_frame_has_exactly_its_documented_fields() -> None:
    peer = {"id": "p0123456789", "name": "Ada", "audio": True, "video": False, "screen": None, "hand": None}
    ice = {"iceServers": [], "iceTransportPolicy": "all"}
    built = {
        "welcome": protocol.welcome("p0123456789", "t" * 24, "r", [peer], ice, 6, False, "1",
                                    {"locked": False, "lockedBy": None, "passcode": False}),
        "peer-joined": protocol.peer_joined(peer),
        "peer-left": protocol.peer_left("p0123456789"),
        "peer-updated": protocol.peer_updated(peer),
        "signal": protocol.relayed(protocol.parse(
            '{"type": "signal", "to": "p0123456789", "conn": "c1", "candidate": null}'), "p9876543210"),
        "ice-servers": protocol.ice_servers(ice),
        "pong": protocol.pong(),
        "shutdown": protocol.shutdown("bye"),
        "error": {**UserError("room-full", "full", maxPeers=6).frame(), "lockedBy": "Ada"},
        "chat": protocol.chat({"id": 1, "from": "p0123456789", "name": "Ada", "ts": 1, "text": "hi"}),
        "chat-history": protocol.chat_history([]),
        "room-updated": protocol.room_updated({"locked": True, "lockedBy": "Ada", "passcode": False}, "Ada"),
    }
    assert set(built) == set(protocol.SERVER_TYPES)
    for kind, frame in built.items():
        documented = set(_table(_section(kind, "Server to client")))
        sent = set(frame) - {"type"}
        if kind == "signal":  # exactly one of description/candidate/view is present
            sent |= {"description", "candidate", "view"}
        assert sent == documented, f"{kind}: sent {sorted(sent)}, documented {sorted(documented)}"


def test_documented_close_codes_and_limits_are_the_enforced_ones() -> None:
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| protocol \| (\d+) \|", DOC, flags=re.M))
    assert set(rows) == set(errors.PROTOCOL_ERRORS)
    for code, close in rows.items():
        assert int(close) == errors.CLOSE_CODES.get(code, errors.DEFAULT_CLOSE_CODE), code
    assert f"{protocol.MAX_FRAME:,} bytes" in DOC
    assert protocol.MAX_SDP == 32 * 1024 and "| SDP | 32 KiB" in DOC
    assert protocol.MAX_CANDIDATE == 1024 and "| ICE candidate string | 1 KiB" in DOC


def test_documented_examples_parse_as_the_server_expects() -> None:
    client = DOC.split("## Client to server", 1)[1].split("## Server to client", 1)[0]
    examples = re.findall(r"```json\n(.*?)```", client, flags=re.S)
    assert len(examples) >= len(protocol.CLIENT_TYPES)
    for example in examples:
        msg = protocol.parse(example)
        assert msg["type"] in protocol.CLIENT_TYPES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(["type", "room", "name", "to", "from", "description", "candidate", "audio", "video",
                        "resume", "sdp", "password"])
types = st.sampled_from(list(protocol.CLIENT_TYPES) + ["x", ""])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, json_values | types, max_size=6))
def test_random_messages_never_escape_as_anything_but_signaling_errors(msg: dict) -> None:
    try:
        out = protocol.parse(json.dumps(msg))
    except SignalingError as err:
        assert err.code in errors.USER_ERRORS + errors.PROTOCOL_ERRORS
    else:
        assert out["type"] in protocol.CLIENT_TYPES and "from" not in out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_random_bytes_never_crash_the_parser(frame: bytes | str) -> None:
    try:
        protocol.parse(frame)
    except SignalingError as err:
        assert err.code in errors.PROTOCOL_ERRORS + errors.USER_ERRORS
