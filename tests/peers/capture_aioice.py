#!/usr/bin/env python3
"""Capture real ICE connectivity checks from aioice (the ICE agent of aiortc).

What it does
------------
Runs two aioice ``Connection``s on loopback, A controlling and B controlled,
exchanges their credentials and host candidates, connects them, waits for one
round of consent checks (RFC 7675), and records every STUN datagram each side
*receives* (the exact bytes read from the socket), with the source and
destination addresses and the credentials of both sides. It prints them as
JSON (or, with ``--rust``, as Rust consts for ``core/src/agent/captured.rs``).

Sniffing happens at the receiver (``StunProtocol.datagram_received`` is
wrapped before it parses anything), so the bytes are what went over the wire,
unchanged by any re-encoding.

Scenario 1 ("normal"): aioice 0.13 nominates *aggressively* when controlling
(every check carries USE-CANDIDATE unless ``remote_is_lite``); the only
controlling requests without USE-CANDIDATE are consent checks.
``aioice.ice.CONSENT_INTERVAL`` is lowered to 0.5 s so one consent round
happens quickly (it changes timing only, not the bytes).

Scenario 2 ("probe", optional, ``--probe-tid HEX``): a controlled aioice
Connection with fixed credentials answers one Binding request built with
aioice's own STUN codec but carrying a transaction id and tie-breaker we
choose (``--probe-tie-breaker HEX``): those our Rust agent draws from the
seed [0x5c; 32] for its first check. The Rust test then checks that our
agent's first check is byte for byte aioice's request, and feeds aioice's
real, signed response back to our agent with matching ids.

Patches (documented in the shared PEERS.md notes): aioice skips 127.0.0.1 when
listing host addresses, so ``aioice.ice.get_host_addresses`` is replaced to
return ``["127.0.0.1"]``; mDNS is not involved.

How to run
----------
    python3 -m venv /tmp/aioice-venv
    /tmp/aioice-venv/bin/pip install aioice          # 0.13.0 when captured
    /tmp/aioice-venv/bin/python tests/peers/capture_aioice.py > capture.json
    /tmp/aioice-venv/bin/python tests/peers/capture_aioice.py --probe-only \
        --probe-tid b4339f4f9316e283e092d19e --probe-tie-breaker cdacadd30e0d83f4
    (add --rust to print Rust consts instead of JSON)

Ports and random credentials/tie-breakers differ per run; the Rust tests
take every value from the capture itself.
"""

import argparse
import asyncio
import json
import socket
import struct
import sys
from importlib.metadata import version

import aioice
import aioice.ice
import aioice.stun
from aioice import Candidate, Connection

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
aioice.ice.CONSENT_INTERVAL = 0.5

ATTR_NAMES = {
    0x0006: "USERNAME",
    0x0008: "MESSAGE-INTEGRITY",
    0x0009: "ERROR-CODE",
    0x0020: "XOR-MAPPED-ADDRESS",
    0x0024: "PRIORITY",
    0x0025: "USE-CANDIDATE",
    0x8022: "SOFTWARE",
    0x8028: "FINGERPRINT",
    0x8029: "ICE-CONTROLLED",
    0x802A: "ICE-CONTROLLING",
}

CLASSES = {0x0001: "request", 0x0101: "success", 0x0111: "error", 0x0011: "indication"}

captured = []  # (Connection receiving it, src, dst, bytes)
_orig_received = aioice.ice.StunProtocol.datagram_received


def _sniff(self, data, addr):
    dst = self.transport.get_extra_info("sockname")
    captured.append((self.receiver, (addr[0], addr[1]), (dst[0], dst[1]), bytes(data)))
    return _orig_received(self, data, addr)


aioice.ice.StunProtocol.datagram_received = _sniff


def attributes(data):
    """The attribute list, decoded independently of aioice's parser."""
    out = []
    pos = 20
    while pos + 4 <= len(data):
        typ, length = struct.unpack("!HH", data[pos : pos + 4])
        value = data[pos + 4 : pos + 4 + length]
        name = ATTR_NAMES.get(typ, f"0x{typ:04x}")
        if typ == 0x0006:
            shown = value.decode()
        elif typ in (0x0024, 0x8028):
            shown = struct.unpack("!I", value)[0]
        elif typ in (0x8029, 0x802A):
            shown = struct.unpack("!Q", value)[0]
        else:
            shown = value.hex()
        out.append({"type": f"0x{typ:04x}", "name": name, "length": length, "value": shown})
        pos += 4 + length + (-length % 4)
    return out


def describe(receiver, sender, src, dst, data, label):
    msg_type, length = struct.unpack("!HH", data[:4])
    return {
        "label": label,
        "class": CLASSES.get(msg_type, hex(msg_type)),
        "src": f"{src[0]}:{src[1]}",
        "dst": f"{dst[0]}:{dst[1]}",
        "receiver_ufrag": receiver.local_username,
        "receiver_pwd": receiver.local_password,
        "sender_ufrag": sender.local_username,
        "sender_pwd": sender.local_password,
        "sender_tie_breaker": sender._tie_breaker,
        "receiver_tie_breaker": receiver._tie_breaker,
        "transaction_id": data[8:20].hex(),
        "attributes": attributes(data),
        "hex": data.hex(),
    }


async def exchange(a, b):
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            await y.add_remote_candidate(Candidate.from_sdp(c.to_sdp()))
        await y.add_remote_candidate(None)
        y.remote_username = x.local_username
        y.remote_password = x.local_password


async def normal():
    a = Connection(ice_controlling=True, use_ipv6=False)
    b = Connection(ice_controlling=False, use_ipv6=False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    await exchange(a, b)
    await asyncio.gather(a.connect(), b.connect())
    await a.send(b"ping")
    assert await b.recv() == b"ping"
    # One or two consent rounds (0.4 to 0.6 s each with the patched interval).
    await asyncio.sleep(1.3)
    await asyncio.gather(a.close(), b.close())

    peers = {id(a): (a, b, "A (controlling)"), id(b): (b, a, "B (controlled)")}
    out = []
    for receiver, src, dst, data in captured:
        r, s, name = peers[id(receiver)]
        if not data or data[0] >> 6 != 0:
            continue  # application data
        out.append(describe(r, s, src, dst, data, f"received by {name}"))
    return out


async def probe(tid_hex, tie_breaker):
    """A controlled aioice agent answers one request with our chosen tid."""
    b = Connection(
        ice_controlling=False,
        use_ipv6=False,
        local_username="aioi",
        local_password="aioicepassword22charsXY",
    )
    await b.gather_candidates()
    b.remote_username = "rust"
    b.remote_password = "rustagentpassword22chars"
    host = b.local_candidates[0]
    # connect() waits for remote candidates (none will come); once started
    # it answers incoming checks.
    connect = asyncio.create_task(b.connect())
    await asyncio.sleep(0.05)

    req = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.REQUEST,
        transaction_id=bytes.fromhex(tid_hex),
    )
    req.attributes["USERNAME"] = "aioi:rust"
    req.attributes["PRIORITY"] = 1862270975
    req.attributes["ICE-CONTROLLING"] = tie_breaker
    req.add_message_integrity(b"aioicepassword22charsXY")
    request = bytes(req)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    sock.sendto(request, (host.host, host.port))
    loop = asyncio.get_running_loop()
    while True:
        data, src = await loop.run_in_executor(None, sock.recvfrom, 2048)
        if data[:2] == b"\x01\x01" and data[8:20] == bytes.fromhex(tid_hex):
            break
    me = sock.getsockname()
    sock.close()
    connect.cancel()
    await b.close()
    return {
        "label": "aioice success response to a request with a chosen tid",
        "request_hex": request.hex(),
        "request_src": f"{me[0]}:{me[1]}",
        "response_src": f"{src[0]}:{src[1]}",
        "responder_ufrag": "aioi",
        "responder_pwd": "aioicepassword22charsXY",
        "transaction_id": tid_hex,
        "attributes": attributes(data),
        "hex": data.hex(),
    }


def rust_bytes(hexstr):
    b = bytes.fromhex(hexstr)
    lines = []
    for i in range(0, len(b), 12):
        lines.append("    " + " ".join(f"0x{x:02x}," for x in b[i : i + 12]))
    return "&[\n" + "\n".join(lines) + "\n]"


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--probe-tid", help="12-byte transaction id (hex) for scenario 2")
    ap.add_argument(
        "--probe-tie-breaker",
        default="0123456789abcdef",
        help="ICE-CONTROLLING tie-breaker (hex) of the probe request",
    )
    ap.add_argument("--probe-only", action="store_true", help="skip scenario 1")
    ap.add_argument("--rust", action="store_true", help="print Rust consts, not JSON")
    args = ap.parse_args()
    result = {"aioice_version": version("aioice")}
    result["messages"] = [] if args.probe_only else await normal()
    if args.probe_tid:
        result["probe"] = await probe(args.probe_tid, int(args.probe_tie_breaker, 16))
    if not args.rust:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    for i, m in enumerate(result["messages"]):
        print(f"// {m['label']}: {m['class']} {m['src']} -> {m['dst']}")
        print(f"//   {[a['name'] for a in m['attributes']]}")
        print(f"pub const MSG_{i}: &[u8] = {rust_bytes(m['hex'])};\n")
    if "probe" in result:
        p = result["probe"]
        print(f"// probe request {p['request_src']} -> {p['response_src']}")
        print(f"pub const PROBE_REQUEST: &[u8] = {rust_bytes(p['request_hex'])};")
        print(f"// probe response {p['response_src']} -> {p['request_src']}")
        print(f"pub const PROBE_RESPONSE: &[u8] = {rust_bytes(p['hex'])};")


if __name__ == "__main__":
    asyncio.run(main())
