"""idle, the Python reference: the CPU the event loop burns while a task
sleeps n milliseconds (process CPU time, every thread)."""
import asyncio
import time

import common


async def main(ms):
    await asyncio.sleep(0)
    cpu0, start = time.process_time_ns(), time.perf_counter_ns()
    await asyncio.sleep(ms / 1000)
    return time.process_time_ns() - cpu0, time.perf_counter_ns() - start


def cli():
    args = common.parse_args(1000)
    if args.n <= 0:
        raise SystemExit("idle: --n must be positive")
    cpu, wall = common.run(args, main(args.n))
    common.result("idle", args, cpu / args.n, True,
                  cpu_pct=f"{100 * cpu / wall:.3f}",
                  wall_ms=f"{wall / 1e6:.1f}")


if __name__ == "__main__":
    cli()
