"""fib, the Python reference: fib(n) makes fib(n-1) and fib(n-2) tasks and
awaits both, down to n < 2 (or n <= --cutoff, computed serially).
ns_per_op is wall time per task made, the root included."""
import asyncio
import time

import common

cutoff = 0


def splits(n):
    return n >= 2 and n > cutoff


def serial(n):
    return n if n < 2 else serial(n - 1) + serial(n - 2)


async def fib(n):
    if not splits(n):
        return serial(n)
    a = asyncio.create_task(fib(n - 1))
    b = asyncio.create_task(fib(n - 2))
    return await a + await b


def units(n):
    return 1 + units(n - 1) + units(n - 2) if splits(n) else 1


def value(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def main(n):
    start = time.perf_counter_ns()
    v = await asyncio.create_task(fib(n))
    return time.perf_counter_ns() - start, v


def cli():
    global cutoff
    args = common.parse_args(22)
    cutoff = args.cutoff
    ns, v = common.run(args, main(args.n))
    tasks = units(args.n)
    common.result("fib", args, ns / tasks, v == value(args.n), value=v,
                  tasks=tasks, wall_ms=f"{ns / 1e6:.1f}")


if __name__ == "__main__":
    cli()
