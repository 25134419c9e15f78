"""What an HTTP request costs a Python server before any of `serve`'s own work: the floor under the fleet
rows of `make bench`.

A fleet's steady state is many kept-alive connections each sending a small request now and then (1000
nodes reporting every 10 s: 100 requests a second, each waking the server on its own). This starts one
trivial server per variant in a process of its own, drives it with such a load from another process
(`--conns` connections, each posting a 300-byte report every `--interval` seconds), and prints the
server's CPU and its CPU per request:

- `aiohttp`: aiohttp's low-level server (what fleet/aioserver.py uses) answering 204 after reading the
  body, on asyncio's event loop and on uvloop's;
- `protocol`: a bare `asyncio.Protocol` that finds the end of each request and writes a fixed 204: no
  HTTP library at all, only the event loop and the system calls (a measuring stick, not a server).

    .venv/bin/python benchmarks/http_floor.py [--conns 1000] [--interval 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from typing import cast

VARIANTS = ("aiohttp", "aiohttp+uvloop", "protocol", "protocol+uvloop")


def serve(variant: str, port: int) -> None:
    """Run one trivial server until killed (in its own process)."""
    from aiohttp import web

    async def handle(req: web.BaseRequest) -> web.StreamResponse:
        await req.read()
        return web.Response(status=204)

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.buf = cast(asyncio.Transport, transport), b""  # uvloop's is no subclass

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                length = 0
                for line in self.buf[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(self.buf) < end + 4 + length:
                    return
                self.buf = self.buf[end + 4 + length :]
                self.transport.write(b"HTTP/1.1 204 No Content\r\nServer: floor\r\n\r\n")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if variant.startswith("aiohttp"):
            await loop.create_server(web.Server(handle, access_log=None), "127.0.0.1", port)
        else:
            await loop.create_server(Bare, "127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    if variant.endswith("+uvloop"):
        import uvloop

        uvloop.install()
    asyncio.run(main())


def load(port: int, conns: int, interval: float) -> None:
    """`conns` kept-alive connections, each posting one report every `interval` s (in its own process)."""

    async def node(i: int) -> None:
        await asyncio.sleep(random.random() * interval)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"name": f"n{i:05d}", "labels": {"kubernetes.io/hostname": f"n{i:05d}"}}).encode()
        head = f"POST /nodes/n{i:05d}/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        while True:
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")  # 204: no body
            await asyncio.sleep(interval)

    async def main() -> None:
        await asyncio.gather(*(node(i) for i in range(conns)))

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(variant: str, conns: int, interval: float, seconds: float) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--serve", variant, "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    client = None
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = subprocess.Popen(
            [*me, "--load", "--port", str(port), "--conns", str(conns), "--interval", str(interval)]
        )
        time.sleep(interval + 2)  # every connection made and in its rhythm
        c0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(server.pid), time.monotonic()
    finally:
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait()
    rate = conns / interval
    return {
        "cpu_percent": (c1 - c0) / (t1 - t0) * 100,
        "requests_per_s": rate,
        "cpu_us_per_request": (c1 - c0) / (t1 - t0) / rate * 1e6,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if args.load:
        load(args.port, args.conns, args.interval)
        return 0
    print(
        f"{args.conns} kept-alive connections, a report each every {args.interval:g} s, "
        f"{args.seconds:g} s measured"
    )
    print("| server | requests/s | server CPU | CPU per request |")
    print("|---|---|---|---|")
    for variant in VARIANTS:
        r = measure(variant, args.conns, args.interval, args.seconds)
        print(
            f"| {variant} | {r['requests_per_s']:.0f} | {r['cpu_percent']:.1f} % | "
            f"{r['cpu_us_per_request']:.0f} µs |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
