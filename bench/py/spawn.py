"""spawn, the Python reference: n tasks made with create_task, all before
the first is awaited, then gathered; task i returns i and the sum is
checked against n(n-1)/2."""
import asyncio
import time

import common


async def unit(i):
    return i


async def main(n):
    start = time.perf_counter_ns()
    tasks = [asyncio.create_task(unit(i)) for i in range(n)]
    total = sum(await asyncio.gather(*tasks))
    return time.perf_counter_ns() - start, total


def cli():
    args = common.parse_args(200000)
    ns, total = common.run(args, main(args.n))
    common.result("spawn", args, ns / max(args.n, 1),
                  total == args.n * (args.n - 1) // 2, sum=total)


if __name__ == "__main__":
    cli()
