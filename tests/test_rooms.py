import pytest

from meshcall.errors import UserError
from meshcall.rooms import Rooms


def test_newcomer_sees_current_peers_and_ids_are_unique() -> None:
    rooms = Rooms(max_peers=6)
    a = rooms.join("r1", "Ada", True, True, now=0).peer
    res = rooms.join("r1", "Grace", True, False, now=0)
    assert [p.id for p in res.others] == [a.id]
    assert res.peer.id != a.id and res.peer.token != a.token
    assert not res.resumed
    assert {p.id for p in rooms.members("r1")} == {a.id, res.peer.id}


def test_room_full_at_cap_and_nothing_changes() -> None:
    rooms = Rooms(max_peers=2)
    rooms.join("r", "a", True, True, 0)
    rooms.join("r", "b", True, True, 0)
    with pytest.raises(UserError) as err:
        rooms.join("r", "c", True, True, 0)
    assert err.value.code == "room-full"
    assert rooms.peer_count == 2 and len(rooms.members("r")) == 2


def test_rooms_are_separate() -> None:
    rooms = Rooms()
    a = rooms.join("one", "a", True, True, 0).peer
    b = rooms.join("two", "b", True, True, 0).peer
    assert [p.id for p in rooms.members("one")] == [a.id] and [p.id for p in rooms.members("two")] == [b.id]
    assert rooms.others(a.id) == []


def test_remove_notifies_others_and_forgets_empty_room() -> None:
    rooms = Rooms()
    a = rooms.join("r", "a", True, True, 0).peer
    b = rooms.join("r", "b", True, True, 0).peer
    assert [p.id for p in rooms.remove(a.id)] == [b.id]
    assert rooms.remove(b.id) == []
    assert rooms.room_count == 0 and rooms.peer_count == 0
    assert rooms.remove(b.id) == []  # twice is harmless


def test_resume_within_grace_keeps_id_and_place() -> None:
    rooms = Rooms(max_peers=2, grace=9)
    a = rooms.join("r", "a", True, True, 0).peer
    rooms.join("r", "b", True, True, 0)
    assert rooms.expired(5) == []  # its socket dropped at 0: the place is held
    again = rooms.join("r", "a", False, True, 6, resume=a.token)
    assert again.resumed and again.peer.id == a.id and again.peer.audio is False
    assert rooms.peer_count == 2  # the full room still admits its own returning member


def test_unheard_peer_expires_after_grace_and_token_dies_with_it() -> None:
    rooms = Rooms(grace=9)
    a = rooms.join("r", "a", True, True, 0).peer
    rooms.touch(a.id, 4)
    assert rooms.expired(12) == []
    assert rooms.expired(13) == [a.id]
    rooms.remove(a.id)
    fresh = rooms.join("r", "a", True, True, 14, resume=a.token)
    assert not fresh.resumed and fresh.peer.id != a.id


def test_a_vanished_peer_is_held_only_its_shorter_hold_unless_it_resumes() -> None:
    rooms = Rooms(grace=20)
    a = rooms.join("r", "a", True, True, 0).peer
    b = rooms.join("r", "b", True, True, 0).peer
    rooms.vanished(a.id, 2, hold=8)
    rooms.vanished(b.id, 2, hold=8)
    assert rooms.expired(9.9) == []
    again = rooms.join("r", "b", True, True, 5, resume=b.token)  # back in time: the hold is over
    assert again.resumed
    assert rooms.expired(10) == [a.id]
    assert rooms.expired(24.9) == [a.id]
    assert sorted(rooms.expired(25)) == sorted([a.id, b.id])  # b by the grace, counted from its resume


def test_a_vanished_hold_never_exceeds_the_grace() -> None:
    rooms = Rooms(grace=3)
    a = rooms.join("r", "a", True, True, 0).peer
    rooms.vanished(a.id, 0.5, hold=8)  # heard at 0, vanished at 0.5: the grace (from 0) ends it
    assert rooms.expired(2.9) == []
    assert rooms.expired(3) == [a.id]
    rooms.touch(a.id, 1)
    assert rooms.expired(3.4) == []
    assert rooms.expired(3.5) == [a.id]  # heard later, but the hold (capped at the grace) ran out


def test_resume_token_only_works_in_its_own_room() -> None:
    rooms = Rooms()
    a = rooms.join("r", "a", True, True, 0).peer
    other = rooms.join("elsewhere", "a", True, True, 0, resume=a.token)
    assert not other.resumed and other.peer.id != a.id


def test_public_view_never_shows_the_token() -> None:
    rooms = Rooms()
    a = rooms.join("r", "a", True, True, 0).peer
    assert "token" not in a.public() and a.token not in str(a.public())
