"""The netlink socket kept open between requests, on the kernel's own rtnetlink."""

from __future__ import annotations

import errno
import socket

import pytest

from agent.collectors import rtnetlink

GETLINK = rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)


def link_indexes(replies: list[tuple[int, bytes]]) -> list[int]:
    return [rtnetlink.IFINFOMSG.unpack_from(payload)[2] for kind, payload in replies
            if kind == rtnetlink.RTM_NEWLINK]


def held(sock: rtnetlink.Socket) -> socket.socket | None:
    return sock._socket


def test_requests_one_after_another_on_the_same_socket() -> None:
    expected = sorted(index for index, _ in socket.if_nameindex())
    sock = rtnetlink.Socket()
    try:
        assert sorted(link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))) == expected
        first = held(sock)
        assert first is not None
        for _ in range(3):
            assert sorted(link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))) == expected
        assert held(sock) is first
    finally:
        sock.close()
    assert held(sock) is None


def send_unread(sock: rtnetlink.Socket, flags: int, request: bytes) -> None:
    """A request on the socket whose replies its caller never reads, as one abandoned
    half-way would leave them."""
    raw = held(sock)
    assert raw is not None
    raw.send(rtnetlink.HEADER.pack(rtnetlink.HEADER.size + len(request), rtnetlink.RTM_GETLINK,
                                   flags, 7777, 0) + request)


def test_replies_to_an_earlier_request_are_skipped() -> None:
    expected = sorted(index for index, _ in socket.if_nameindex())
    sock = rtnetlink.Socket()
    try:
        sock.dump(rtnetlink.RTM_GETLINK, GETLINK)
        # One link asked for alone: its answer waits in the socket, first in line.
        loopback = rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, socket.if_nametoindex("lo"),
                                            0, 0)
        send_unread(sock, rtnetlink.NLM_F_REQUEST, loopback)
        first = held(sock)
        assert sorted(link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))) == expected
        assert held(sock) is first
    finally:
        sock.close()


def test_a_dump_left_running_on_the_socket_does_not_fail_the_next() -> None:
    """The kernel answers EBUSY to a dump on a socket whose earlier dump is not read to its
    end: asked again on a new socket."""
    expected = sorted(index for index, _ in socket.if_nameindex())
    sock = rtnetlink.Socket()
    try:
        sock.dump(rtnetlink.RTM_GETLINK, GETLINK)
        send_unread(sock, rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP, GETLINK)
        assert sorted(link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))) == expected
    finally:
        sock.close()


def test_a_datagram_larger_than_the_buffer_asks_again_with_a_larger_one(monkeypatch) -> None:
    expected = sorted(index for index, _ in socket.if_nameindex())
    monkeypatch.setattr(rtnetlink, "BUFFER_SIZE", 64)  # smaller than any link message
    sock = rtnetlink.Socket()
    try:
        assert sorted(link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))) == expected
        assert sock._buffer_size > 64
    finally:
        sock.close()


def test_an_error_closes_the_socket_and_the_next_request_opens_another() -> None:
    sock = rtnetlink.Socket()
    try:
        sock.dump(rtnetlink.RTM_GETLINK, GETLINK)
        first = held(sock)
        # A single link asked for by neither index nor name: the kernel answers EINVAL.
        with pytest.raises(OSError) as raised:
            sock.dump(rtnetlink.RTM_GETLINK, GETLINK, flags=rtnetlink.NLM_F_REQUEST)
        assert raised.value.errno in (errno.EINVAL, errno.ENODEV)
        assert held(sock) is None
        assert first is not None and first.fileno() == -1
        assert link_indexes(sock.dump(rtnetlink.RTM_GETLINK, GETLINK))
        assert held(sock) is not None
    finally:
        sock.close()


def test_the_one_shot_dump_closes_its_socket(monkeypatch) -> None:
    opened: list[rtnetlink.Socket] = []
    original = rtnetlink.Socket.__init__

    def record(self: rtnetlink.Socket, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(rtnetlink.Socket, "__init__", record)
    assert link_indexes(rtnetlink.dump(rtnetlink.RTM_GETLINK, GETLINK))
    assert len(opened) == 1 and held(opened[0]) is None


def test_attribute_map_stops_after_the_kinds_asked_for() -> None:
    data = (rtnetlink.encode_attribute(3, b"eth0\0") + rtnetlink.encode_attribute(4, b"xxxx")
            + b"\xff\xff\xff\xff")  # malformed beyond: never read
    assert rtnetlink.attribute_map(data, frozenset({3})) == {3: b"eth0\0"}
    with pytest.raises(ValueError, match="malformed"):
        rtnetlink.attribute_map(data, frozenset({3, 5}))
