"""Many requests over one persistent stream per peer: ``/symphony/rpc/1.0.0`` (issue #19).

py-libp2p's request/response opens a yamux stream per request and negotiates its protocol
with multistream-select (``BasicHost.new_stream``: a handshake round trip, then a protocol
round trip, then the request's own), and every request pays the stream set-up and the
negotiation's CPU on both sides. Here a node opens *one* stream to each peer on
``MUX_PROTOCOL`` the first time it asks it anything, and every later request to that peer
travels on it as a frame tagged with a request id; replies come back tagged with the same id,
in any order. The per-request protocols (``RequestResponse``'s format) are still served, and a
peer that does not serve ``MUX_PROTOCOL`` is asked that way.

Frames are py-libp2p's varint-length-prefixed messages (``VarIntLengthMsgReadWriter``); inside:

- request: ``0x00``, request id (4 bytes, big endian), protocol length (1 byte), protocol, payload;
- reply: ``0x01``, request id, payload;
- failure: ``0x02``, request id, reason (UTF-8): the handler failed or the node refused the request.

The server keeps every defence of the per-request path (``libp2p.py``), per request rather than
per stream: a request takes a member's or a stranger's slot only while its handler runs, so a
peer holding its stream open takes none; a peer has at most ``max_in_flight`` requests running
per protocol, as it may hold that many streams per protocol on the other path (more are refused
and reported as ``too_many_streams``); once a frame's first byte has arrived,
the rest must arrive within ``read_timeout_s`` (``slow_request``); a malformed, oversized or
truncated frame is that peer's offence and ends its stream. Idle time between frames is not an
offence: a persistent stream is idle most of the time.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, IOException, MessageTooLarge
from libp2p.io.msgio import VarIntLengthMsgReadWriter
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

__all__ = ["MUX_PROTOCOL", "MuxClient", "MuxFailure", "MuxServer"]

logger = logging.getLogger(__name__)

MUX_PROTOCOL = "/symphony/rpc/1.0.0"
_REQUEST, _REPLY, _FAILURE = 0, 1, 2
_HEAD = struct.Struct(">BI")
#: bytes in a protocol id (one length byte on the wire; also what ``Libp2pTransport.set_handler`` accepts)
MAX_PROTOCOL = 255
# a frame's bytes beyond its payload: head, protocol length and the longest protocol
FRAME_OVERHEAD = _HEAD.size + 1 + MAX_PROTOCOL

Answer = Callable[[str, str, bytes], Awaitable[bytes | None]]
"""``(peer, protocol, payload)`` -> the reply, or None when the handler failed (it logs why)."""
Admit = Callable[[str, str], trio.Semaphore | None]
"""``(peer, protocol)`` -> an acquired request slot to release after the handler, or None when
the request is refused (the callee counts the refusal)."""
Report = Callable[[ID, str, str], None]
"""``(peer, protocol, reason)``: record an offence of ``peer``."""


class MuxFailure(Exception):
    """A request on a mux stream failed: the peer's handler failed or refused it, or the stream broke."""


class _Offence(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_request(rid: int, protocol: str, payload: bytes) -> bytes:
    name = protocol.encode()
    if len(name) > MAX_PROTOCOL:
        raise ValueError(f"protocol id longer than {MAX_PROTOCOL} bytes: {protocol!r}")
    return _HEAD.pack(_REQUEST, rid) + bytes([len(name)]) + name + payload


def decode_request(frame: bytes) -> tuple[int, str, bytes]:
    """Split a request frame. Raises ValueError if it is not one."""
    if len(frame) < _HEAD.size + 1:
        raise ValueError("short frame")
    kind, rid = _HEAD.unpack_from(frame)
    size = frame[_HEAD.size]
    start = _HEAD.size + 1
    if kind != _REQUEST or len(frame) < start + size:
        raise ValueError("not a request frame")
    return rid, frame[start : start + size].decode(), frame[start + size :]


def encode_reply(rid: int, reply: bytes | None, reason: str = "") -> bytes:
    if reply is None:
        return _HEAD.pack(_FAILURE, rid) + reason.encode()
    return _HEAD.pack(_REPLY, rid) + reply


def decode_reply(frame: bytes) -> tuple[int, bytes | None, str]:
    """``(request id, reply or None, failure reason)``. Raises ValueError if it is not a reply."""
    if len(frame) < _HEAD.size:
        raise ValueError("short frame")
    kind, rid = _HEAD.unpack_from(frame)
    body = frame[_HEAD.size :]
    if kind == _REPLY:
        return rid, body, ""
    if kind == _FAILURE:
        return rid, None, body.decode(errors="replace")
    raise ValueError(f"unknown frame kind {kind}")


class _Writer:
    """Frames onto one stream, one writer at a time (concurrent handlers share the stream)."""

    def __init__(self, stream: INetStream, max_frame: int) -> None:
        self._msgio = VarIntLengthMsgReadWriter(stream, max_frame)
        self._lock = trio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._msgio.write_msg(frame)


#: Bytes asked of the stream per read: a whole frame, usually, where reading a varint byte by byte
#: cost a yamux read, and so a WINDOW_UPDATE frame, per byte (issue #19)
READ_CHUNK = 64 * 1024


class _FrameReader:
    """Varint-length-prefixed frames (py-libp2p's ``VarIntLengthMsgReadWriter`` format) from one
    stream, read in chunks. py-libp2p's reader asks the stream for the varint one byte at a time,
    and each yamux read sends a WINDOW_UPDATE (``YamuxStream._auto_tune_and_send_window_update``):
    six frames of window updates per request and reply against two of data, each encrypted, sent
    and parsed. Here one read usually brings a whole frame."""

    def __init__(self, stream: INetStream, max_frame: int) -> None:
        self._stream = stream
        self._max = max_frame
        self._buffer = bytearray()

    async def wait(self) -> bool:
        """Until some of the next frame is here (no deadline: an idle stream is no fault); False
        once the peer closed its side or the stream broke."""
        if self._buffer:
            return True
        try:
            chunk = await self._stream.read(READ_CHUNK)
        except (StreamEOF, IOException):
            return False
        self._buffer += chunk
        return bool(chunk)

    async def frame(self) -> bytes:
        """The next frame, whole.

        Raises:
            ParseError: its length is not a varint. MessageTooLarge: it is over the limit.
            IncompleteReadError: the stream ended inside it. IOException: the stream broke.
        """
        while (head := self._head()) is None or len(self._buffer) < sum(head):
            chunk = await self._stream.read(READ_CHUNK)
            if not chunk:
                raise IncompleteReadError("the stream ended inside a frame", sum(head or (1, 0)), len(self._buffer))
            self._buffer += chunk
        size, length = head
        with memoryview(self._buffer) as view:  # one copy (a bytearray slice would copy twice)
            frame = bytes(view[size : size + length])
        del self._buffer[: size + length]
        return frame

    def _head(self) -> tuple[int, int] | None:
        """(varint bytes, frame length) once the varint is buffered whole, else None."""
        length = 0
        for i, byte in enumerate(self._buffer[:10]):
            length |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if length > self._max:
                    raise MessageTooLarge(f"frame of {length} bytes exceeds {self._max}")
                return i + 1, length
        if len(self._buffer) >= 10:
            raise ParseError("frame length is not a varint")
        return None


@dataclass
class MuxServer:
    """Serves the requests a peer sends on its mux stream, each in its own task."""

    answer: Answer
    admit: Admit
    report: Report
    max_request_bytes: int
    max_reply_bytes: int
    read_timeout_s: float
    max_in_flight: int
    write_timeout_s: float

    async def serve(self, stream: INetStream) -> None:
        """The stream handler for ``MUX_PROTOCOL``: read frames until the peer closes its side
        (then finish what runs and close) or offends (then report it and reset the stream)."""
        peer = stream.muxed_conn.peer_id
        writer = _Writer(stream, self.max_reply_bytes + _HEAD.size)
        reader = _FrameReader(stream, self.max_request_bytes + FRAME_OVERHEAD)
        in_flight: Counter[str] = Counter()  # per protocol, as the guard caps per-protocol streams
        async with trio.open_nursery() as nursery:
            try:
                while (frame := await self._next_frame(reader)) is not None:
                    await self._dispatch(nursery, writer, peer, frame, in_flight)
            except _Offence as offence:
                self.report(peer, MUX_PROTOCOL, offence.reason)
                nursery.cancel_scope.cancel()
                await _reset(stream)
                return
        await stream.close()

    async def _dispatch(
        self, nursery: trio.Nursery, writer: _Writer, peer: ID, frame: bytes, in_flight: Counter[str]
    ) -> None:
        try:
            rid, protocol, payload = decode_request(frame)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Offence("malformed_request") from exc
        if len(payload) > self.max_request_bytes:
            raise _Offence("oversized_request")
        if in_flight[protocol] >= self.max_in_flight:
            # reported under the mux's id: the protocol named in the frame is the peer's to choose
            self.report(peer, MUX_PROTOCOL, "too_many_streams")
            await writer.send(encode_reply(rid, None, "too many requests in flight"))
            return
        slot = self.admit(peer.to_base58(), protocol)
        if slot is None:
            await writer.send(encode_reply(rid, None, "busy"))
            return
        in_flight[protocol] += 1
        nursery.start_soon(self._run, writer, peer, rid, protocol, payload, slot, in_flight)

    async def _run(
        self, writer: _Writer, peer: ID, rid: int, protocol: str, payload: bytes,
        slot: trio.Semaphore, in_flight: Counter[str],
    ) -> None:
        """One request: the handler under its slot, then the reply; the request counts against
        ``max_in_flight`` (per protocol) until its reply is written, so a peer that stops reading holds at most
        that many replies here, each for at most ``write_timeout_s``."""
        try:
            try:
                reply = await self.answer(peer.to_base58(), protocol, payload)
            finally:
                slot.release()
            with trio.move_on_after(self.write_timeout_s):
                await writer.send(encode_reply(rid, reply, "" if reply is not None else "request failed"))
        except IOException as exc:  # the peer went away: nobody to tell
            logger.debug("could not reply to %s on %s: %s", peer, protocol, exc)
        finally:
            in_flight[protocol] -= 1
            if not in_flight[protocol]:
                del in_flight[protocol]  # a peer naming ever new protocols must not grow the counter

    async def _next_frame(self, reader: _FrameReader) -> bytes | None:
        """The next request frame, or None once the peer has closed its side or the stream broke.

        Waiting for a frame's first byte has no deadline; the rest has ``read_timeout_s``."""
        if not await reader.wait():
            return None
        with trio.move_on_after(self.read_timeout_s):
            try:
                return await reader.frame()
            except MessageTooLarge as exc:
                raise _Offence("oversized_request") from exc
            except ParseError as exc:
                raise _Offence("malformed_request") from exc
            except (IncompleteReadError, StreamEOF) as exc:
                raise _Offence("truncated_request") from exc
            except IOException:  # reset by the peer: it gave up
                return None
        raise _Offence("slow_request")


@dataclass
class _Channel:
    """Our stream to one peer and the requests waiting for a reply on it."""

    stream: INetStream
    writer: _Writer
    pending: dict[int, tuple[trio.Event, list[tuple[bytes | None, str]]]] = field(default_factory=dict)
    next_id: int = 0
    broken: str = ""
    frames: int = 0  # reply frames read so far: a request whose wait saw none added, saw no progress
    retired: bool = False  # no new requests: reset once the ones on it are done
    reset: bool = False  # the stream has been reset (``MuxClient._reset``): once, by whichever end of it comes first


class MuxClient:
    """Sends requests on one stream per peer, opened on first use and reopened after it breaks."""

    def __init__(
        self,
        open_stream: Callable[[ID], Awaitable[INetStream]],
        spawn: Callable[..., None],
        max_reply_bytes: int,
    ) -> None:
        self._open_stream = open_stream
        self._spawn = spawn
        self._max_reply_bytes = max_reply_bytes
        self._channels: dict[ID, _Channel] = {}
        self._opening: dict[ID, trio.Lock] = {}
        self.abandoned = 0  # streams retired because a request timed out on them without any progress

    async def request(self, peer: ID, protocol: str, payload: bytes) -> bytes:
        """Send one request and wait for its reply (the caller bounds the wait).

        A request given up on (the caller's deadline) while no reply frame at all came on its stream
        retires that stream (``_retire``): later requests open a new one, those already on it may
        still finish.

        Raises:
            MuxFailure: the peer's handler failed or refused, or the stream broke.
            Whatever ``open_stream`` raises when no stream can be opened.
        """
        channel = await self._channel(peer)
        rid = channel.next_id = (channel.next_id + 1) % (1 << 32)
        done, box = trio.Event(), list[tuple[bytes | None, str]]()
        channel.pending[rid] = (done, box)
        seen = channel.frames
        try:
            await channel.writer.send(encode_request(rid, protocol, payload))
            await done.wait()
        except IOException as exc:
            self._break(peer, channel, f"stream broke: {exc}")
            raise MuxFailure(channel.broken) from exc
        finally:
            channel.pending.pop(rid, None)  # a late reply to a request given up on is dropped
            if not box and channel.frames == seen and not channel.broken:
                self._retire(peer, channel)
            if channel.retired and not channel.pending:
                self._reset(channel)
        reply, reason = box[0]
        if reply is None:
            raise MuxFailure(reason)
        return reply

    def _retire(self, peer: ID, channel: _Channel) -> None:
        """Stop sending on ``channel``: a request waited its whole time on it and not one reply came
        back meanwhile, so the stream may be stuck (issue #19: a silent stream failed every later
        request to that peer until the connection closed). Requests already on it keep waiting for
        their own replies (a long Task shares the stream with beacons, and a stream that merely
        answers slowly must not fail them); the stream is reset when the last is done. Counted in
        ``abandoned`` and logged."""
        if channel.retired:
            return
        channel.retired = True
        self.abandoned += 1
        if self._channels.get(peer) is channel:
            del self._channels[peer]
        logger.warning("no reply on the request stream to %s within a request's timeout: opening a new one", peer)

    async def _channel(self, peer: ID) -> _Channel:
        lock = self._opening.setdefault(peer, trio.Lock())
        async with lock:  # concurrent first requests share one stream
            channel = self._channels.get(peer)
            if channel is None:
                stream = await self._open_stream(peer)
                channel = _Channel(stream, _Writer(stream, self._max_reply_bytes))
                self._channels[peer] = channel
                self._spawn(self._read_replies, peer, channel)
            return channel

    async def _read_replies(self, peer: ID, channel: _Channel) -> None:
        reader = _FrameReader(channel.stream, self._max_reply_bytes + _HEAD.size)
        try:
            while await reader.wait():
                rid, reply, reason = decode_reply(await reader.frame())
                channel.frames += 1
                waiting = channel.pending.get(rid)
                if waiting is not None:
                    waiting[1].append((reply, reason))
                    waiting[0].set()
        except MessageTooLarge:
            self._break(peer, channel, "reply exceeds max_reply_bytes")
        except (ValueError, ParseError):
            self._break(peer, channel, "malformed reply frame")
        except (IOException, StreamEOF) as exc:
            self._break(peer, channel, f"stream closed: {exc}")
        else:
            self._break(peer, channel, "stream closed")
        if channel.broken:
            self._reset(channel)

    def _reset(self, channel: _Channel) -> None:
        """Reset ``channel``'s stream once: a retired stream is reset by its last request, and the reset
        then ends its reader, which would otherwise reset it a second time."""
        if not channel.reset:
            channel.reset = True
            self._spawn(_reset, channel.stream)

    def _break(self, peer: ID, channel: _Channel, reason: str) -> None:
        """Fail every request waiting on ``channel`` and forget it; the next request opens a new one."""
        channel.broken = channel.broken or reason
        if self._channels.get(peer) is channel:
            del self._channels[peer]
        for done, box in channel.pending.values():
            if not done.is_set():
                box.append((None, channel.broken))
                done.set()

    def forget(self, peer: ID) -> None:
        """Drop our stream to ``peer`` (its last connection closed)."""
        channel = self._channels.get(peer)
        if channel is not None:
            self._break(peer, channel, "connection closed")
        self._opening.pop(peer, None)


async def _reset(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception:  # the connection may already be gone
        logger.debug("resetting a mux stream failed", exc_info=True)
