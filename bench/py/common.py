"""Shared by the Python references of weft-bench: the command line (the
same options as a weft-bench cell, plus --loop), running a coroutine on the
chosen loop, and the RESULT line."""
import argparse
import asyncio
import resource
import sys


def parse_args(default_n, add_options=None):
    """The cell's options; add_options(parser), if given, adds a
    workload's own."""
    p = argparse.ArgumentParser()
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--workers", type=int, default=1,
                   help="ignored: an event loop runs on one thread")
    p.add_argument("--n", type=int, default=default_n)
    p.add_argument("--cutoff", type=int, default=0)
    p.add_argument("--parties", type=int, default=0)
    if add_options:
        add_options(p)
    return p.parse_args()


def run(args, coro):
    """asyncio.run(coro) on the stock loop or on uvloop's."""
    if args.loop == "uvloop":
        import uvloop  # Debian's python3-uvloop, 0.17
        uvloop.install()
    return asyncio.run(coro)


def result(workload, args, ns_per_op, ok, **extra):
    """Print the RESULT line and exit 0 if the check passed, else 1."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = (f"RESULT workload={workload} mode={args.loop} workers=1 "
            f"n={args.n} ns_per_op={ns_per_op:.2f} rss_kib={rss} "
            f"check={'ok' if ok else 'FAIL'}")
    if args.cutoff:
        line += f" cutoff={args.cutoff}"
    if args.parties:
        line += f" parties={args.parties}"
    for key, value in extra.items():
        line += f" {key}={value}"
    print(line, flush=True)
    sys.exit(0 if ok else 1)
