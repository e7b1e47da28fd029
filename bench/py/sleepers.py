"""sleepers, the Python reference: n tasks each `await asyncio.sleep(1)`,
then end; all are made with create_task before the first is awaited, then
gathered. Each reads the monotonic clock around its sleep; the check fails
unless all n ended and every one slept at least a second (uvloop: less the
millisecond that libuv's whole-millisecond clock may round away).
asleep_ms is when the last task went to sleep, from the first start.
ns_per_op is (wall - 1 s) / n; bytes_per_sleeper is the peak RSS growth
over n (ru_maxrss at the end against /proc/self/statm before)."""
import asyncio
import os
import resource
import time

import common

SLEEP_NS = 1_000_000_000


def rss_now_kib():
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") // 1024


async def sleeper(state):
    t0 = time.monotonic_ns()
    state["asleep"] = max(state["asleep"], t0)
    await asyncio.sleep(SLEEP_NS / 1e9)
    late = time.monotonic_ns() - t0 - SLEEP_NS
    state["ended"] += 1
    state["late_min"] = min(state["late_min"], late)
    state["late_max"] = max(state["late_max"], late)


async def main(n):
    state = {"ended": 0, "late_min": 0, "late_max": 0, "asleep": 0}
    base = rss_now_kib()
    start = time.monotonic_ns()
    tasks = [asyncio.create_task(sleeper(state)) for _ in range(n)]
    spawn = time.monotonic_ns() - start
    await asyncio.gather(*tasks)
    wall = time.monotonic_ns() - start
    state["asleep"] -= start
    return state, base, spawn, wall


def cli():
    args = common.parse_args(100000)
    if args.n <= 0:
        raise SystemExit("sleepers: --n must be positive")
    state, base, spawn, wall = common.run(args, main(args.n))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # libuv keeps loop time in whole milliseconds (uv_now), so a uvloop
    # timer may fire up to a millisecond short of the exact delay.
    tolerance = 1_000_000 if args.loop == "uvloop" else 0
    ok = (state["ended"] == args.n and state["late_min"] >= -tolerance
          and wall >= SLEEP_NS)
    common.result("sleepers", args, (wall - SLEEP_NS) / args.n, ok,
                  wall_ms=f"{wall / 1e6:.1f}", spawn_ms=f"{spawn / 1e6:.1f}",
                  asleep_ms=f"{state['asleep'] / 1e6:.1f}",
                  bytes_per_sleeper=f"{(peak - base) * 1024 / args.n:.0f}",
                  late_max_ms=f"{state['late_max'] / 1e6:.2f}",
                  late_min_ms=f"{state['late_min'] / 1e6:.2f}",
                  ended=state["ended"], base_kib=base)


if __name__ == "__main__":
    cli()
