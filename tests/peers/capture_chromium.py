#!/usr/bin/env python3
"""Capture real ICE connectivity checks from headless Chromium's ICE agent.

What it does
------------
Writes a page whose RTCPeerConnection (one data channel) makes an offer and
takes an answer carrying *our* ufrag/pwd and one host candidate,
127.0.0.1:PORT, where this script listens on a plain UDP socket. Chromium
(the controlling agent: it made the offer) then sends connectivity checks to
that socket. Every Binding request is recorded and answered with a signed
success response (aioice's STUN codec), so Chromium goes on to nominate
(Chromium 156 put USE-CANDIDATE on its very first check; this script
keeps listening 3 s after it for later checks). DTLS never
starts; ICE does not need it. Chromium's own ufrag/pwd are read from the
offer, which the page prints to the console (stderr with --enable-logging).

How to run
----------
    apt-get install chromium                          # Debian 156 when captured
    /tmp/aioice-venv/bin/python tests/peers/capture_chromium.py > chromium.json

Flags from the shared PEERS.md notes: --allow-loopback-in-peer-connection (else
no 127.0.0.1 candidates) and --disable-features=WebRtcHideLocalIpsWithMdns
(else host candidates are .local names).
"""

import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

import aioice.stun as stun

UFRAG = "scrm"
PWD = "screamicepassword22chars"
PORT = 45678

PAGE = """<!doctype html><script>
(async () => {
  const pc = new RTCPeerConnection();
  pc.createDataChannel("x");
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  console.log("OFFER " + JSON.stringify(offer.sdp));
  const mid = /a=mid:(\\S+)/.exec(offer.sdp)[1];
  const fp = "a=fingerprint:sha-256 " +
    Array.from({length: 32}, (_, i) => (i * 7 % 256).toString(16).padStart(2, "0")).join(":");
  const answer = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE " + mid,
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0",
    "a=mid:" + mid, "a=ice-ufrag:%UFRAG%", "a=ice-pwd:%PWD%", fp, "a=setup:active",
    "a=sctp-port:5000",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 %PORT% typ host",
    "a=end-of-candidates", ""].join("\\r\\n");
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  pc.oniceconnectionstatechange = () => console.log("ICE " + pc.iceConnectionState);
})().catch(e => console.log("ERROR " + e));
</script>"""


def attributes(data):
    out, pos = [], 20
    while pos + 4 <= len(data):
        typ, length = struct.unpack("!HH", data[pos : pos + 4])
        out.append({"type": f"0x{typ:04x}", "length": length,
                    "value": data[pos + 4 : pos + 4 + length].hex()})
        pos += 4 + length + (-length % 4)
    return out


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", PORT))
    sock.settimeout(0.2)
    tmp = tempfile.mkdtemp()
    page = os.path.join(tmp, "page.html")
    with open(page, "w") as f:
        f.write(PAGE.replace("%UFRAG%", UFRAG).replace("%PWD%", PWD).replace("%PORT%", str(PORT)))
    log = open(os.path.join(tmp, "chromium.log"), "w+")
    chromium = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--allow-loopback-in-peer-connection",
         "--disable-features=WebRtcHideLocalIpsWithMdns", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp}/profile", "--remote-debugging-port=0", "file://" + page],
        stdout=log, stderr=log)
    requests = []
    deadline = time.time() + 15
    try:
        while time.time() < deadline:
            try:
                data, src = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if len(data) < 20 or data[:2] != b"\x00\x01":
                continue
            msg = stun.parse_message(data)
            requests.append({"src": f"{src[0]}:{src[1]}", "dst": f"127.0.0.1:{PORT}",
                             "transaction_id": data[8:20].hex(),
                             "attributes": attributes(data), "hex": data.hex()})
            resp = stun.Message(message_method=stun.Method.BINDING,
                                message_class=stun.Class.RESPONSE,
                                transaction_id=msg.transaction_id)
            resp.attributes["XOR-MAPPED-ADDRESS"] = src
            resp.add_message_integrity(PWD.encode())
            sock.sendto(bytes(resp), src)
            if any(a["type"] == "0x0025" for a in requests[-1]["attributes"]):
                # Nominated: keep listening a little for later checks.
                deadline = min(deadline, time.time() + 3)
    finally:
        chromium.terminate()
        chromium.wait()
    log.seek(0)
    text = log.read()
    m = re.search(r'OFFER (".*?[^\\]")', text)
    offer = json.loads(m.group(1)) if m else ""
    ver = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()
    json.dump({
        "chromium_version": ver,
        "receiver_ufrag": UFRAG, "receiver_pwd": PWD,
        "sender_ufrag": (re.search(r"a=ice-ufrag:(\S+)", offer) or [None, None])[1],
        "sender_pwd": (re.search(r"a=ice-pwd:(\S+)", offer) or [None, None])[1],
        "ice_states": re.findall(r"ICE (\w+)", text),
        "requests": requests,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
