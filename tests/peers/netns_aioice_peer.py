"""An aioice (PyPI) ICE agent speaking the line protocol of
tests/src/bin/ice_peer.rs, for the network-namespace harness
(tests/tests/netns.rs), so the driver can pair any two of {ours, aioice}.

Usage: netns_aioice_peer.py --role controlling|controlled --host IP [--host IP ...]
                            [--peer IP] [--stun IP:PORT] [--mode M] [--count N]

`--peer` and `--mode` are accepted and ignored (aioice has no policy: it
queries the STUN server whenever one is given). Host candidates are exactly
the `--host` addresses (aioice.ice.get_host_addresses is replaced).

Out: ready, ufrag, pwd, cand, eoc, gathered <ms>, connected <ms> <local> <remote>,
done <data> <echoes>, error <text>.  In: start, ufrag, pwd, cand, eoc, go, quit.
Times are from `start` (before the Connection is created).
"""

import argparse
import asyncio
import sys
import time

import aioice
import aioice.ice


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", required=True, choices=["controlling", "controlled"])
    p.add_argument("--host", action="append", required=True)
    p.add_argument("--peer")
    p.add_argument("--stun")
    p.add_argument("--mode")
    p.add_argument("--count", type=int, default=10)
    a = p.parse_args()
    hosts = list(a.host)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: hosts
    stun = None
    if a.stun:
        h, port = a.stun.rsplit(":", 1)
        stun = (h, int(port))

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    out("ready")
    while True:
        raw = await reader.readline()
        if not raw or raw.strip() == b"quit":
            return
        if raw.strip() == b"start":
            break

    t0 = time.monotonic()
    conn = aioice.Connection(
        ice_controlling=(a.role == "controlling"), stun_server=stun, use_ipv6=False
    )
    await conn.gather_candidates()
    out(f"ufrag {conn.local_username}")
    out(f"pwd {conn.local_password}")
    for c in conn.local_candidates:
        out(f"cand {c.to_sdp()}")
    out("eoc")
    out(f"gathered {(time.monotonic() - t0) * 1000:.3f}")

    connect_task = None
    data = 0
    echoes = 0
    done = False

    receive_task = None

    async def receive() -> None:
        nonlocal data, echoes, done
        while True:
            try:
                d = await conn.recv()
            except ConnectionError:
                return
            if d.startswith(b"echo:d-"):
                echoes += 1
            elif d.startswith(b"d-"):
                data += 1
                await conn.send(b"echo:" + d)
            if not done and data >= a.count and echoes >= a.count:
                done = True
                out(f"done {data} {echoes}")

    async def connect() -> None:
        try:
            await conn.connect()
        except Exception as e:  # noqa: BLE001 - report anything to the driver
            out(f"error connect failed: {e!r}")
            return
        ms = (time.monotonic() - t0) * 1000
        local, remote = "-", "-"
        try:
            pair = conn._nominated[1]
            local = f"{pair.local_candidate.host}:{pair.local_candidate.port}"
            remote = f"{pair.remote_addr[0]}:{pair.remote_addr[1]}"
        except Exception:  # noqa: BLE001 - private API, best effort
            pass
        out(f"connected {ms:.3f} {local} {remote}")
        nonlocal receive_task
        receive_task = asyncio.ensure_future(receive())

    while True:
        raw = await reader.readline()
        if not raw:
            break
        line = raw.decode().strip()
        word, _, rest = line.partition(" ")
        if word == "ufrag":
            conn.remote_username = rest
        elif word == "pwd":
            conn.remote_password = rest
        elif word == "cand":
            try:
                await conn.add_remote_candidate(aioice.Candidate.from_sdp(rest))
            except Exception as e:  # noqa: BLE001
                sys.stderr.write(f"aioice peer: candidate {rest!r} skipped: {e!r}\n")
        elif word == "eoc":
            await conn.add_remote_candidate(None)
            connect_task = asyncio.ensure_future(connect())
        elif word == "go":
            for i in range(a.count):
                await conn.send(f"d-{i}".encode())
            if a.count == 0 and not done:
                done = True
                out("done 0 0")
        elif word == "quit":
            break
    for task in (connect_task, receive_task):
        if task is not None:
            task.cancel()
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
