"""timer, the Python reference: how late `await asyncio.sleep(0.001)`
wakes, n times in a row in one task, measured with the monotonic clock.
With --parties K, K more tasks each spin on the clock for 20 us and then
`await asyncio.sleep(0)`, until the samples are taken (a busy loop).
ns_per_op is the p99 lateness. The check fails on a sleep that ended
early (uvloop: by more than the millisecond that libuv's whole-millisecond
clock may round away)."""
import asyncio
import math
import time

import common

SLEEP_NS = 1_000_000
STEP_NS = 20_000


async def busy(state):
    steps = 0
    while not state["stop"]:
        until = time.perf_counter_ns() + STEP_NS
        while time.perf_counter_ns() < until:
            pass
        steps += 1
        await asyncio.sleep(0)
    state["steps"] += steps
    if steps == 0:
        state["idle_busy"] += 1


async def main(n, parties):
    state = {"stop": False, "steps": 0, "idle_busy": 0}
    tasks = [asyncio.create_task(busy(state)) for _ in range(parties)]
    for _ in range(10 if parties else 0):
        await asyncio.sleep(SLEEP_NS / 1e9)
    late = []
    for _ in range(n):
        t0 = time.monotonic_ns()
        await asyncio.sleep(SLEEP_NS / 1e9)
        late.append(time.monotonic_ns() - t0 - SLEEP_NS)
    state["stop"] = True
    await asyncio.gather(*tasks)
    return sorted(late), state


def quantile(v, q):
    """Nearest rank: the smallest value with at least q of them at or
    below it."""
    return v[max(math.ceil(q * len(v)), 1) - 1]


def cli():
    args = common.parse_args(1000)
    if args.n <= 0 or args.parties < 0:
        raise SystemExit("timer: --n must be positive, --parties not "
                         "negative")
    late, state = common.run(args, main(args.n, args.parties))
    tolerance = SLEEP_NS if args.loop == "uvloop" else 0
    p50, p99 = quantile(late, 0.50), quantile(late, 0.99)
    extra = {"p50_us": f"{p50 / 1e3:.1f}", "p99_us": f"{p99 / 1e3:.1f}",
             "max_us": f"{late[-1] / 1e3:.1f}",
             "min_us": f"{late[0] / 1e3:.1f}"}
    if args.parties:
        extra["busy_steps"] = state["steps"]
        extra["step_us"] = STEP_NS // 1000
    common.result("timer", args, p99,
                  late[0] >= -tolerance and state["idle_busy"] == 0, **extra)


if __name__ == "__main__":
    cli()
