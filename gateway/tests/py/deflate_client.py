"""Python `websockets` clients for the permessage-deflate black-box tests
(gateway/tests/compressed_clients_get_the_same_messages.rs).

Uses websockets' sans-I/O ClientProtocol over a plain socket, so that the
bytes each client reads are counted exactly. Prints one JSON object.

    deflate_client.py compare  HOST:PORT N   # a deflate and a plain member (short texts)
    deflate_client.py compare-long HOST:PORT N  # the same with paragraph-long texts
    deflate_client.py bomb     HOST:PORT SIZE  # a compressed text inflating to SIZE bytes
    deflate_client.py decline  HOST:PORT     # offers server_max_window_bits=10
    deflate_client.py measure[-long] HOST:PORT GATEWAY_PID MEMBERS N deflate|plain
        # bytes members read and gateway CPU for N messages (docs/benchmarks.md)
"""

import json
import os
import socket
import sys
import time

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.uri import parse_uri

TEXTS = [
    "hey everyone, did you see the release notes? the new search is so much faster",
    "yes! and they finally fixed the notification bug on android, took them long enough",
    "anyone up for lunch at the thai place around 12:30? I can book a table for six",
    "count me in, but I have a meeting at 13:30 so I need to leave a bit early",
    "the deploy is blocked on the flaky integration test again, can someone take a look?",
    "I'll look into it after standup, I think it's the timeout in the payment mock",
]


class Client:
    def __init__(self, addr, user, extensions):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.proto = ClientProtocol(
            parse_uri(f"ws://{addr}/ws?user={user}&device=py"), extensions=extensions
        )
        self.request = self.proto.connect()
        self.proto.send_request(self.request)
        self.flush()
        self.bytes_read = 0
        self.pending = []
        self.response = None
        self.close_code = None
        self.next_id = 1
        while self.response is None:
            self.read()
        hello = self.recv()
        assert hello["type"] == "hello", hello

    def flush(self):
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def read(self):
        data = self.sock.recv(65536)
        self.bytes_read += len(data)
        if not data:
            self.proto.receive_eof()
        else:
            self.proto.receive_data(data)
        for event in self.proto.events_received():
            if self.response is None and hasattr(event, "status_code"):
                self.response = event
            elif getattr(event, "opcode", None) == Opcode.TEXT:
                self.pending.append(json.loads(event.data.decode()))
            elif getattr(event, "opcode", None) == Opcode.CLOSE:
                self.close_code = self.proto.close_rcvd.code if self.proto.close_rcvd else None
        self.flush()
        return bool(data)

    def recv(self):
        while not self.pending:
            if not self.read():
                raise EOFError(f"closed: {self.close_code}")
        return self.pending.pop(0)

    def request_reply(self, req):
        rid = self.next_id
        self.next_id += 1
        req["id"] = rid
        self.send(req)
        while True:
            ev = self.recv()
            if ev.get("id") == rid:
                return ev
            self.pending_events.append(ev)

    def send(self, req):
        self.proto.send_text(json.dumps(req).encode())
        self.flush()

    def extension(self):
        return self.response.headers.get("Sec-WebSocket-Extensions")


def join(c, channel):
    c.pending_events = []
    r = c.request_reply({"type": "join", "channel": channel})
    assert r["type"] == "joined", r


def collect(c, channel, n):
    """The first n `msg` events of channel, as (seq, from, text)."""
    got = [e for e in c.pending_events if e.get("type") == "msg"]
    c.pending_events = []
    while len(got) < n:
        ev = c.recv()
        if ev.get("type") == "msg" and ev.get("channel") == channel:
            got.append(ev)
    return [(m["seq"], m["from"], m["text"]) for m in got[:n]]


def text_of(i, long_texts):
    text = f"{TEXTS[i % len(TEXTS)]} (#{i})"
    if long_texts:
        # A paragraph: a few sentences of the same conversation.
        text = " ".join(TEXTS[(i + k) % len(TEXTS)] for k in range(4)) + f" (#{i})"
    return text


def compare(addr, n, long_texts=False):
    """A deflate member and a plain member of one room. First the deflate
    client sends 20 messages (compressed by websockets, inflated by the
    gateway); then a plain client sends n, and the bytes each member reads
    for those n are counted."""
    channel = f"room:deflate-{int(time.time() * 1000) % 100000}"
    zipped = Client(addr, "zed", [ClientPerMessageDeflateFactory()])
    plain = Client(addr, "pat", None)
    sender = Client(addr, "sam", None)
    for c in (zipped, plain, sender):
        join(c, channel)
    first = 20
    for i in range(first):
        zipped.send({
            "type": "send", "channel": channel, "client_msg_id": f"z{i}",
            "text": text_of(i, long_texts),
        })
    early_zipped = collect(zipped, channel, first)
    early_plain = collect(plain, channel, first)
    base = {c: c.bytes_read for c in (zipped, plain)}
    cpu0 = time.process_time()
    for i in range(first, first + n):
        sender.send({
            "type": "send", "channel": channel, "client_msg_id": f"c{i}",
            "text": text_of(i, long_texts),
        })
    got_zipped = early_zipped + collect(zipped, channel, n)
    got_plain = early_plain + collect(plain, channel, n)
    cpu = time.process_time() - cpu0
    expected = [text_of(i, long_texts) for i in range(first + n)]
    return {
        "zipped_extension": zipped.extension(),
        "plain_extension": plain.extension(),
        "same": got_zipped == got_plain,
        "messages": len(got_plain),
        "texts_ok": [t for (_, _, t) in got_plain] == expected,
        "seqs_in_order": [s for (s, _, _) in got_plain] == list(range(1, first + n + 1)),
        "zipped_bytes": zipped.bytes_read - base[zipped],
        "plain_bytes": plain.bytes_read - base[plain],
        "client_cpu_s": cpu,
    }


def bomb(addr, size):
    c = Client(addr, "boom", [ClientPerMessageDeflateFactory()])
    ext = c.extension()
    c.send({"type": "send", "channel": "room:bomb", "client_msg_id": "b", "text": "a" * size})
    try:
        while c.read():
            pass
    except (ConnectionError, socket.timeout):
        pass
    return {"extension": ext, "close_code": c.close_code}


def decline(addr):
    channel = "room:declined"
    c = Client(addr, "dec", [ClientPerMessageDeflateFactory(server_max_window_bits=10)])
    sender = Client(addr, "snd", None)
    join(c, channel)
    join(sender, channel)
    text = TEXTS[0] * 3
    sender.send({"type": "send", "channel": channel, "client_msg_id": "d", "text": text})
    got = collect(c, channel, 1)
    return {
        "extension": c.extension(),
        "negotiated": [e.name for e in c.proto.extensions],
        "text_ok": got[0][2] == text,
    }


def server_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def measure(addr, pid, members, n, deflate, long_texts=False):
    """`members` members of one room (all with or all without
    permessage-deflate) and a plain sender that keeps up to 32 sends
    unacked; returns the bytes the members read for the n messages and the
    gateway's CPU time (from /proc/<pid>/stat) while they were delivered."""
    import selectors

    channel = f"room:measure-{int(time.time() * 1000) % 100000}"
    ext = [ClientPerMessageDeflateFactory()] if deflate else None
    readers = [Client(addr, f"m{i}", ext) for i in range(members)]
    sender = Client(addr, "sender", None)
    for c in readers + [sender]:
        join(c, channel)
    sel = selectors.DefaultSelector()
    for c in readers:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    base = sum(c.bytes_read for c in readers)
    got = {c: len([e for e in c.pending_events if e.get("type") == "msg"]) for c in readers}
    for c in readers:
        c.pending = []
    hz = os.sysconf("SC_CLK_TCK")
    cpu0 = server_cpu_ticks(pid)
    t0 = time.time()
    sent = acked = 0
    while acked < n or min(got.values()) < n:
        while sent < n and sent - acked < 32:
            sender.send({"type": "send", "channel": channel, "client_msg_id": f"x{sent}",
                         "text": text_of(sent, long_texts)})
            sent += 1
        for key, _ in sel.select(timeout=0.001):
            c = key.data
            try:
                c.read()
            except BlockingIOError:
                pass
            got[c] += sum(1 for e in c.pending if e.get("type") == "msg")
            c.pending = []
        sender.sock.setblocking(False)
        try:
            while True:
                sender.read()
        except BlockingIOError:
            pass
        sender.sock.setblocking(True)
        acked += sum(1 for e in sender.pending if e.get("type") == "ack")
        sender.pending = []
        if time.time() - t0 > 120:
            raise SystemExit("timed out")
    elapsed = time.time() - t0
    cpu = (server_cpu_ticks(pid) - cpu0) / hz
    return {
        "deflate": deflate,
        "extension": readers[0].extension(),
        "members": members,
        "messages": n,
        "member_bytes": sum(c.bytes_read for c in readers) - base,
        "bytes_per_delivery": (sum(c.bytes_read for c in readers) - base) / (members * n),
        "server_cpu_s": cpu,
        "elapsed_s": elapsed,
    }


def main():
    mode, addr = sys.argv[1], sys.argv[2]
    if mode == "compare":
        out = compare(addr, int(sys.argv[3]))
    elif mode == "compare-long":
        out = compare(addr, int(sys.argv[3]), long_texts=True)
    elif mode == "bomb":
        out = bomb(addr, int(sys.argv[3]))
    elif mode == "decline":
        out = decline(addr)
    elif mode in ("measure", "measure-long"):
        pid, members, n, kind = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        out = measure(addr, pid, members, n, kind == "deflate", mode == "measure-long")
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
