"""lock_yield, the Python reference: bench/py/lock.py with
`await asyncio.sleep(0)` inside the critical section (read the counter,
yield while holding the lock, write it back plus one), so that the other
tasks queue for the lock while it is held."""
import lock

if __name__ == "__main__":
    lock.cli("lock_yield", yielding=True, default_n=20000)
