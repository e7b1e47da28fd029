"""yield, the Python reference: `await asyncio.sleep(0)` n times in one
task (--parties 1), or n/2 times in each of two tasks (--parties 2)."""
import asyncio
import time

import common


async def take_turns(per, me, state):
    handoffs = 0
    for _ in range(per):
        state["last"] = me
        await asyncio.sleep(0)
        if state["last"] != me:
            handoffs += 1
    return handoffs


async def main(args):
    parties = args.parties or 1
    per = args.n // parties
    state = {"last": 0}
    start = time.perf_counter_ns()
    if parties == 1:
        await take_turns(per, 0, state)
        handoffs, total = 0, per
    else:
        hs = await asyncio.gather(*(take_turns(per, p, state)
                                    for p in range(parties)))
        handoffs, total = sum(hs), per * parties
    return time.perf_counter_ns() - start, total, handoffs


def cli():
    args = common.parse_args(300000)
    parties = args.parties or 1
    if parties not in (1, 2) or args.n % parties:
        raise SystemExit("yield: --parties must be 1 or 2 and divide --n")
    ns, total, handoffs = common.run(args, main(args))
    extra = {}
    if parties == 2:
        extra["handoff_pct"] = f"{100 * handoffs / args.n:.1f}"
    common.result("yield", args, ns / args.n, total == args.n, **extra)


if __name__ == "__main__":
    cli()
