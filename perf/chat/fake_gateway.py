#!/usr/bin/env python3
"""A stand-in for `magnetar standalone` with its chat gateway, for checking perf/chat.sh and the
load client (perf/chat_load.c) before the gateway exists, and for checking them again whenever
the contract they assume is in doubt. It is not a benchmark peer: it is slow (Python, one thread).

It speaks the contract of ../../../shared/ARCHITECTURE.md §10 as perf/chat.sh expects it:

  - WebSocket on --chat-ws-port, path /sub: after the 101 the client's first packet is auth
    (op 7, JSON body with "room_id":"live://R"), answered with op 8 ver 1 body {"code":0};
    heartbeats (op 2) are answered with op 3 and the room's online count (4 bytes, big-endian).
  - HTTP on --http-port: POST /goim/push/room?type=live&room=R with the message as the body is
    answered 200 {"code":0} and the message goes to every connection in room R. Messages leave
    as an op 9 packet holding one or two op 5 packets (two when a second push arrived within
    --merge-ms), and every seventh message as a bare op 5, so every parsing path of the client is
    used on real sockets.
  - It prints "ready: pulsar://127.0.0.1:PORT" and the admin URL like the standalone, and serves
    on a thread named "cg-gateway" (the name perf/chat.sh pins to CPU 1).
  - With --chat-job off, pushes are kept in order and delivered only while a Job worker is
    connected: `fake_gateway.py job --service-url pulsar://127.0.0.1:PORT` connects to the
    standalone's broker port and does nothing else. While none is connected the backlog grows;
    when one connects again the backlog is delivered at most CATCHUP_PER_S messages per second,
    the shape of a Job worker catching up from its subscription's cursor.

Usage (as perf/chat.sh's --bin):
  perf/chat/fake_gateway.py standalone --http-port 0 --chat-ws-port 3102 [--chat-job off] ...
  perf/chat/fake_gateway.py job --service-url pulsar://127.0.0.1:PORT ...
"""
import asyncio
import base64
import ctypes
import hashlib
import json
import socket
import struct
import sys
import threading
import urllib.parse

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_HEARTBEAT, OP_HEARTBEAT_REPLY, OP_SEND_MSG_REPLY, OP_AUTH, OP_AUTH_REPLY, OP_RAW = 2, 3, 5, 7, 8, 9
HEAD_BYTES_MAX = 8192
FRAME_BYTES_MAX = 1 << 20
CATCHUP_PER_S = 2000


def packet(op, body, ver=1, seq=0):
    return struct.pack(">IHHII", 16 + len(body), 16, ver, op, seq) + body


def ws_frame(payload, opcode=2):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n <= 0xFFFF:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Gateway:
    def __init__(self, merge_ms, job_inside):
        self.job_inside = job_inside
        self.jobs = 0  # connected Job workers (with job_inside off)
        self.backlog = []  # (room, body) not yet handed to a Job worker
        self.draining = False
        self.rooms = {}  # room -> set of writers
        self.pending = {}  # room -> list of messages waiting for the merge window
        self.merge_s = merge_ms / 1000.0
        self.sent = 0

    async def ws_conn(self, reader, writer):
        room = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if len(head) > HEAD_BYTES_MAX or not head.startswith(b"GET /sub"):
                writer.close()
                return
            key = b""
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            for _ in range(10**9):  # one frame per turn; ends when the client leaves
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", await reader.readexactly(8))[0]
                if n > FRAME_BYTES_MAX:
                    break
                mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i & 3] for i, c in enumerate(await reader.readexactly(n)))
                if b0 & 0x0F == 8:
                    break
                off = 0
                while off + 16 <= len(data):
                    plen, hlen, ver, op, seq = struct.unpack(">IHHII", data[off:off + 16])
                    body = data[off + 16:off + plen]
                    off += plen
                    if op == OP_AUTH and room is None:
                        room = json.loads(body)["room_id"].split("://", 1)[1]
                        self.rooms.setdefault(room, set()).add(writer)
                        writer.write(ws_frame(packet(OP_AUTH_REPLY, b'{"code":0}', seq=seq)))
                    elif op == OP_HEARTBEAT:
                        count = len(self.rooms.get(room, ()))
                        writer.write(ws_frame(packet(OP_HEARTBEAT_REPLY, struct.pack(">I", count),
                                                     seq=seq)))
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError,
                asyncio.LimitOverrunError, ValueError, KeyError):
            pass
        finally:
            if room is not None:
                self.rooms.get(room, set()).discard(writer)
            writer.close()

    def flush(self, room):
        msgs = self.pending.pop(room, [])
        if not msgs:
            return
        if len(msgs) == 1 and self.sent % 7 == 6:
            frame = ws_frame(packet(OP_SEND_MSG_REPLY, msgs[0]))
        else:
            frame = ws_frame(packet(OP_RAW, b"".join(packet(OP_SEND_MSG_REPLY, m) for m in msgs)))
        self.sent += 1
        for w in list(self.rooms.get(room, ())):
            w.write(frame)

    def push(self, room, body):
        if not self.job_inside:
            self.backlog.append((room, body))
            if self.jobs > 0 and not self.draining:
                asyncio.get_running_loop().create_task(self.drain())
            return
        self.deliver(room, body)

    async def drain(self):
        self.draining = True
        try:
            while self.jobs > 0 and self.backlog:
                take = self.backlog[:CATCHUP_PER_S // 100]
                del self.backlog[:len(take)]
                for room, body in take:
                    self.deliver(room, body)
                await asyncio.sleep(0.01)
        finally:
            self.draining = False

    async def job_conn(self, reader, writer):
        self.jobs += 1
        if not self.draining:
            asyncio.get_running_loop().create_task(self.drain())
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        finally:
            self.jobs -= 1
            writer.close()

    def deliver(self, room, body):
        first = room not in self.pending
        self.pending.setdefault(room, []).append(body)
        if len(self.pending[room]) >= 2:
            self.flush(room)
        elif first:
            asyncio.get_running_loop().call_later(self.merge_s, self.flush, room)

    async def http_conn(self, reader, writer):
        try:
            for _ in range(10**9):  # keep-alive: one request per turn
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 300)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                url = urllib.parse.urlsplit(target)
                q = urllib.parse.parse_qs(url.query)
                if method == "POST" and url.path == "/goim/push/room" and "room" in q:
                    self.push(q["room"][0], body)
                    out, status = b'{"code":0,"message":""}', b"200 OK"
                else:
                    out, status = b'{"code":-404}', b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(out)).encode() + b"\r\n\r\n" + out)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError,
                asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def job(opts):
    url = urllib.parse.urlsplit(opts.get("--service-url", "pulsar://127.0.0.1:6650"))
    s = socket.create_connection((url.hostname, url.port), timeout=10)
    s.settimeout(None)
    print(f"fake job: connected to {url.hostname}:{url.port}", flush=True)
    while s.recv(4096):
        pass
    return 0


def main():
    args = sys.argv[1:]
    if not args or args[0] not in ("standalone", "job"):
        print("fake_gateway: only `standalone` and `job` are imitated", file=sys.stderr)
        return 2
    opts = {}
    i = 1
    while i < len(args):
        if args[i].startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            i += 1
    if args[0] == "job":
        return job(opts)
    http_port = int(opts.get("--http-port", "8080")) or free_port()
    ws_port = int(opts.get("--chat-ws-port", "3102"))
    broker_port = int(opts.get("--broker-port", "6650")) or free_port()
    merge_ms = float(opts.get("--merge-ms", "5"))
    gw = Gateway(merge_ms, opts.get("--chat-job", "on") != "off")
    started = threading.Event()

    def serve():
        libc = ctypes.CDLL(None)
        libc.prctl(15, b"cg-gateway", 0, 0, 0)  # PR_SET_NAME

        async def run():
            await asyncio.start_server(gw.ws_conn, "127.0.0.1", ws_port, backlog=4096,
                                       limit=HEAD_BYTES_MAX)
            await asyncio.start_server(gw.http_conn, "127.0.0.1", http_port, backlog=128)
            await asyncio.start_server(gw.job_conn, "127.0.0.1", broker_port, backlog=16)
            started.set()
            await asyncio.Event().wait()

        asyncio.run(run())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    if not started.wait(30):
        print("fake_gateway: the servers did not start", file=sys.stderr)
        return 1
    print(f"fake standalone: admin http://127.0.0.1:{http_port}, gateway ws://127.0.0.1:{ws_port}/sub",
          flush=True)
    print(f"ready: pulsar://127.0.0.1:{broker_port}", flush=True)
    t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
