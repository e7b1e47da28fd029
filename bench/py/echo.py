"""echo and mixed, the Python server: asyncio.start_server on 127.0.0.1;
each connection's handler reads a 64-byte request (readexactly), answers
it, writes the reply and drains, until end of file. --loop uvloop runs the
same code on uvloop's loop. weft-bench's cell runs this script as its
server and drives it with its own load generator (bench/loadgen.c), which
measures this process's CPU time; the script prints no RESULT line.

The protocol (bench/loadgen.h): with --rounds 0 (echo) the reply is the
request; with --rounds R > 0 (mixed) the first 8 bytes, read as a
little-endian integer, are XORed with R rounds of FNV-1a over the other
56, as bench_echo_work in C. The cell asks Python for fewer rounds than C
and Go (pure Python runs them ~70 times slower); work_ns on the ready
line says what a request's slice costs here.

The control protocol: the first line on stdout is "port=P work_ns=W"; end
of file on stdin means stop. asyncio and uvloop set TCP_NODELAY on their
TCP connections by default."""
import asyncio
import os
import time

import common

REQ_LEN = 64
MASK = 0xFFFFFFFFFFFFFFFF


def work(payload, rounds):
    """bench_echo_work: FNV-1a over payload, rounds times."""
    h = 0xCBF29CE484222325
    for _ in range(rounds):
        for b in payload:
            h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def answer(req, rounds):
    if not rounds:
        return req
    tag = int.from_bytes(req[:8], "little") ^ work(req[8:], rounds)
    return tag.to_bytes(8, "little") + req[8:]


def work_ns(rounds, calls=64):
    if not rounds:
        return 0
    payload = bytearray(REQ_LEN - 8)
    start = time.perf_counter_ns()
    for i in range(calls):
        payload[0] = i
        work(payload, rounds)
    return (time.perf_counter_ns() - start) / calls


async def handle(reader, writer, rounds):
    """Answer requests until end of file; the load generator sees and
    reports any error itself."""
    try:
        while True:
            req = await reader.readexactly(REQ_LEN)
            writer.write(answer(req, rounds))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(rounds):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_control():
        if not os.read(0, 4096):
            loop.remove_reader(0)
            stop.set()

    server = await asyncio.start_server(
        lambda r, w: handle(r, w, rounds), "127.0.0.1", 0, backlog=511)
    port = server.sockets[0].getsockname()[1]
    print(f"port={port} work_ns={work_ns(rounds):.0f}", flush=True)
    loop.add_reader(0, on_control)
    await stop.wait()
    server.close()
    await server.wait_closed()


def cli():
    def options(p):
        p.add_argument("--rounds", type=int, default=0,
                       help="FNV-1a rounds per request; 0: a plain echo")
    args = common.parse_args(100, options)
    if args.rounds < 0:
        raise SystemExit("echo: --rounds must not be negative")
    common.run(args, serve(args.rounds))


if __name__ == "__main__":
    cli()
