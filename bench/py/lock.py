"""lock, the Python reference: T tasks (--parties) make n increments of
one counter in all, each under one asyncio.Lock; task i makes n/T, one
more if i < n%T. They start together when an asyncio.Event is set; the
clock runs from there to the last one's end. The increment reads and
writes the counter as two steps, and the counter must end at exactly n.
handoff_pct is the share of acquires that took the lock from another task.
bench/py/lock_yield.py runs the same with `await asyncio.sleep(0)` inside
the critical section."""
import asyncio
import time

import common


class Shared:
    def __init__(self):
        self.lock = asyncio.Lock()
        self.counter = 0
        self.last = -1
        self.handoffs = 0


async def party(s, me, share, start, yielding):
    await start.wait()
    for _ in range(share):
        async with s.lock:
            if s.last != me and s.last >= 0:
                s.handoffs += 1
            s.last = me
            v = s.counter
            if yielding:
                await asyncio.sleep(0)
            s.counter = v + 1


async def main(n, parties, yielding):
    s = Shared()
    start = asyncio.Event()
    tasks = [asyncio.create_task(
        party(s, i, n // parties + (i < n % parties), start, yielding))
        for i in range(parties)]
    await asyncio.sleep(0)  # every task waits at the gate
    t0 = time.perf_counter_ns()
    start.set()
    await asyncio.gather(*tasks)
    return time.perf_counter_ns() - t0, s


def cli(workload="lock", yielding=False, default_n=200000):
    args = common.parse_args(default_n)
    parties = args.parties or 4
    if args.n < 1:
        raise SystemExit(f"{workload}: --n must be positive")
    ns, s = common.run(args, main(args.n, parties, yielding))
    common.result(workload, args, ns / args.n, s.counter == args.n,
                  counter=s.counter,
                  handoff_pct=f"{100 * s.handoffs / args.n:.1f}")


if __name__ == "__main__":
    cli()
