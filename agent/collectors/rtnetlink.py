"""A minimal rtnetlink client on the standard library's AF_NETLINK socket: one dump request,
its messages, and their attributes. Collectors that read links, addresses, neighbours or
routes the way node_exporter's netlink libraries do share it; the parsing of each message
type stays with its collector."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Collection, Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 2, 3, 4, 5
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
_RTATTR = struct.Struct("=HH")
# Generic netlink: the controller resolves a family name to the message type of its requests.
NETLINK_GENERIC = 16  # not among the socket module's constants
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
GENLMSGHDR = struct.Struct("=BBH")  # command, version, reserved
MAX_DATAGRAMS = 100_000  # bounds a dump a misbehaving kernel never ends


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each rtattr/nlattr in data, nested and byte-order flags removed."""
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            raise ValueError("malformed netlink attribute")
        yield kind & NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3


def attribute_map(data: bytes, kinds: Collection[int] | None = None) -> dict[int, bytes]:
    """The attributes by type (with kinds, only those types: the others' values are not
    copied, and the attributes after the last of them are not read); a repeated type keeps
    its first value. attributes() as one loop: a link has dozens, read every cycle."""
    found: dict[int, bytes] = {}
    offset, end = 0, len(data)
    unpack = _RTATTR.unpack_from
    wanted = -1 if kinds is None else len(kinds)
    while offset + 4 <= end:  # _RTATTR.size
        length, kind = unpack(data, offset)
        if length < 4 or offset + length > end:
            raise ValueError("malformed netlink attribute")
        kind &= NLA_TYPE_MASK
        if kind not in found and (kinds is None or kind in kinds):
            found[kind] = data[offset + 4:offset + length]
            if len(found) == wanted:
                break
        offset += (length + 3) & ~3
    return found


def c_string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def messages(chunk: bytes, sequence: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram; NLMSG_ERROR with an error
    raises it as OSError. With sequence, messages answering another request are skipped."""
    offset = 0
    while offset + HEADER.size <= len(chunk):
        length, kind, _, seq, _ = HEADER.unpack_from(chunk, offset)
        if length < HEADER.size or offset + length > len(chunk):
            raise ValueError("malformed netlink message")
        if sequence is None or seq == sequence:
            payload = chunk[offset + HEADER.size:offset + length]
            if kind == NLMSG_ERROR:
                errno = -struct.unpack_from("=i", payload)[0]
                if errno:
                    raise OSError(errno, os.strerror(errno))
            else:
                yield kind, payload
        offset += (length + 3) & ~3


# The kernel fills a dump's datagrams up to 32 KiB (less its overhead) whatever larger buffer
# the reader offers; only a single larger message (a link with many VFs) comes bigger, and
# the dump is then asked again with a buffer of its size.
BUFFER_SIZE = 32768


class Socket:
    """A netlink socket for one request after another, kept open between them: opening,
    binding and closing one costs as much as a small dump. Each request has its own sequence
    number and replies to any other are skipped; on any error or interruption the socket is
    closed, so a request left half-read never leaves its replies to the next one (which opens
    a new socket); an error on a socket kept from before is asked again on a new one. One
    caller at a time."""

    __slots__ = ("_buffer_size", "_protocol", "_sequence", "_socket", "_timeout")

    def __init__(self, protocol: int = socket.NETLINK_ROUTE, timeout: float = 5.0) -> None:
        self._protocol = protocol
        self._timeout = timeout
        self._socket: socket.socket | None = None
        self._sequence = 0
        # Each request reads into a buffer of its own (a few us to make), not one kept with
        # the socket: 32 KiB per collector for the agent's whole life.
        self._buffer_size = BUFFER_SIZE

    def dump(self, request_type: int, request: bytes,
             flags: int = NLM_F_REQUEST | NLM_F_DUMP) -> list[tuple[int, bytes]]:
        """Send one request and return every (type, payload) until NLMSG_DONE (without
        NLM_F_DUMP: the first datagram's)."""
        for attempt in range(3):
            reused = self._socket is not None
            try:
                return self._request(request_type, request, flags)
            except BaseException as exc:
                self.close()  # whatever is left unread goes with it
                # A kept socket's error is asked again on a new one, whose answer counts
                # (a dump left running on it answers EBUSY); a larger buffer is asked with.
                if attempt == 2 or not (isinstance(exc, _Truncated) or (reused and isinstance(
                        exc, OSError) and not isinstance(exc, TimeoutError))):
                    if isinstance(exc, _Truncated):
                        raise OSError("netlink datagrams kept outgrowing the buffer") from None
                    raise
        raise AssertionError("unreachable")

    def _request(self, request_type: int, request: bytes, flags: int) -> list[tuple[int, bytes]]:
        sock = self._socket
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, self._protocol)
            try:
                sock.settimeout(self._timeout)
                sock.bind((0, 0))
            except BaseException:
                sock.close()
                raise
            self._socket = sock
        sequence = self._sequence = self._sequence % 0xFFFFFFFF + 1
        sock.send(HEADER.pack(HEADER.size + len(request), request_type, flags, sequence, 0)
                  + request)
        buffer = bytearray(self._buffer_size)
        view = memoryview(buffer)
        replies: list[tuple[int, bytes]] = []
        with view:
            for _ in range(MAX_DATAGRAMS):
                # MSG_TRUNC: the datagram's whole length, even beyond the buffer.
                size = sock.recv_into(buffer, 0, socket.MSG_TRUNC)
                if size > len(buffer):
                    self._buffer_size = size
                    raise _Truncated
                for kind, payload in messages(view[:size].tobytes(), sequence):
                    if kind == NLMSG_DONE:
                        return replies
                    replies.append((kind, payload))
                if not flags & NLM_F_DUMP and replies:
                    return replies
        raise OSError(f"netlink dump of message type {request_type} did not end")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __del__(self) -> None:
        self.close()


class _Truncated(Exception):
    """A datagram was larger than the buffer."""


def dump(request_type: int, request: bytes, protocol: int = socket.NETLINK_ROUTE,
         flags: int = NLM_F_REQUEST | NLM_F_DUMP, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """Send one dump request on a socket of its own and return every (type, payload) until
    NLMSG_DONE."""
    sock = Socket(protocol, timeout)
    try:
        return sock.dump(request_type, request, flags)
    finally:
        sock.close()


def link_names() -> dict[int, str]:
    """Interface index -> name, as Go's net.InterfaceByIndex reads it (the C library's
    if_nameindex asks the kernel the same RTM_GETLINK question, without parsing every
    attribute of every link in Python)."""
    return dict(socket.if_nameindex())


def encode_attribute(kind: int, value: bytes) -> bytes:
    return _RTATTR.pack(_RTATTR.size + len(value), kind) + value + b"\0" * (-len(value) % 4)


def genl_family_id(name: str) -> int:
    """The message type of a generic netlink family; OSError ENOENT if it is not there."""
    request = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0) + encode_attribute(
        CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
    for _, payload in dump(GENL_ID_CTRL, request, NETLINK_GENERIC, flags=NLM_F_REQUEST):
        found = attribute_map(payload[GENLMSGHDR.size:]).get(CTRL_ATTR_FAMILY_ID)
        if found is not None and len(found) >= 2:
            return int(struct.unpack_from("=H", found)[0])
    raise OSError(errno.ENOENT, f"generic netlink family {name} not found")
