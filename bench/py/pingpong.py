"""pingpong, the Python reference: two tasks hand a token back and forth
n times; one op is a round trip. --parties picks the primitive: 1, a pair
of asyncio.Event (set the other's, wait on your own, clear it); 2, a pair
of asyncio.Queue(maxsize=1). The token counts up by one at every hand-off:
the first task must get back 2, 4, ..., 2n, the second 1, 3, ..., 2n-1."""
import asyncio
import time

import common


class EventEnd:
    """An event and the token that travels beside it."""

    def __init__(self):
        self.event = asyncio.Event()
        self.token = 0

    async def send(self, token):
        self.token = token
        self.event.set()

    async def recv(self):
        await self.event.wait()
        self.event.clear()
        return self.token


class QueueEnd:
    def __init__(self):
        self.queue = asyncio.Queue(maxsize=1)

    async def send(self, token):
        await self.queue.put(token)

    async def recv(self):
        return await self.queue.get()


async def party(n, first, mine, peer):
    """Play n rounds; return the last token, or -1 at one out of
    sequence."""
    expect = 2 if first else 1
    if first:
        await peer.send(1)
    token = 0
    for i in range(n):
        token = await mine.recv()
        if token != expect:
            return -1
        if not first or i + 1 < n:
            await peer.send(token + 1)
        expect += 2
    return token


async def main(n, parties):
    end = EventEnd if parties == 1 else QueueEnd
    a, b = end(), end()
    start = time.perf_counter_ns()
    tokens = await asyncio.gather(party(n, True, a, b), party(n, False, b, a))
    return time.perf_counter_ns() - start, tokens


def cli():
    args = common.parse_args(50000)
    parties = args.parties or 1
    if parties not in (1, 2) or args.n < 1:
        raise SystemExit("pingpong: --parties must be 1 or 2, --n positive")
    ns, (first, second) = common.run(args, main(args.n, parties))
    common.result("pingpong", args, ns / args.n,
                  first == 2 * args.n and second == 2 * args.n - 1,
                  via="event" if parties == 1 else "queue", token=first)


if __name__ == "__main__":
    cli()
