"""An aioice (PyPI) ICE agent for the scream-ice-tokio interop test.

Usage: aioice_peer.py controlling|controlled [COUNT]

Line protocol on stdout (to the Rust test):
    ufrag <ufrag>
    pwd <pwd>
    cand <candidate-attribute value, as aioice's Candidate.to_sdp()>
    eoc                               (end of our candidates)
    connected <milliseconds from the peer's eoc to connected>
    sent <COUNT>                      (after sending py-0 .. py-<COUNT-1>)
    done <echoed>                     (after the Rust side sent "bye")
    error <text>
Line protocol on stdin (from the Rust test): the same `ufrag`, `pwd`,
`cand`, `eoc` lines for the Rust agent's side.

After connecting it sends COUNT datagrams "py-<i>", then echoes every
datagram it receives as b"echo:" + data until it receives b"bye".
"""

import asyncio
import sys
import time

import aioice
import aioice.ice

# aioice skips 127.0.0.1 when it lists host addresses; the test runs on
# loopback, so offer exactly that.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    role = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    conn = aioice.Connection(ice_controlling=(role == "controlling"), use_ipv6=False)
    await conn.gather_candidates()
    out(f"ufrag {conn.local_username}")
    out(f"pwd {conn.local_password}")
    for c in conn.local_candidates:
        out(f"cand {c.to_sdp()}")
    out("eoc")

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        raw = await reader.readline()
        if not raw:
            out("error stdin closed before eoc")
            return
        line = raw.decode().strip()
        if line.startswith("ufrag "):
            conn.remote_username = line[len("ufrag "):]
        elif line.startswith("pwd "):
            conn.remote_password = line[len("pwd "):]
        elif line.startswith("cand "):
            await conn.add_remote_candidate(aioice.Candidate.from_sdp(line[len("cand "):]))
        elif line == "eoc":
            await conn.add_remote_candidate(None)
            break

    t0 = time.monotonic()
    try:
        await asyncio.wait_for(conn.connect(), 20)
    except Exception as e:  # noqa: BLE001 - report anything to the test
        out(f"error connect failed: {e!r}")
        return
    out(f"connected {(time.monotonic() - t0) * 1000:.1f}")

    for i in range(count):
        await conn.send(f"py-{i}".encode())
    out(f"sent {count}")

    echoed = 0
    while True:
        try:
            data = await asyncio.wait_for(conn.recv(), 20)
        except Exception as e:  # noqa: BLE001
            out(f"error recv failed: {e!r}")
            return
        if data == b"bye":
            break
        await conn.send(b"echo:" + data)
        echoed += 1
    out(f"done {echoed}")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
