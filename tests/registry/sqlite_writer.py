"""A writer process for the durability test: acknowledge writes on stdout, then get killed.

Usage: python sqlite_writer.py DB PREFIX.  Runs 8 concurrent writers (so
group commits of several requests happen) and prints ``key revision`` after
each acknowledged put, flushing at once; the parent kills it with SIGKILL at
a random moment and checks every printed key is in the store.
"""

from __future__ import annotations

import asyncio
import sys

from flotte import registry


async def main(db: str, prefix: str) -> None:
    async with registry.connect(f"sqlite://{db}") as reg:
        out = sys.stdout
        out.write("ready\n")
        out.flush()

        async def writer(w: int) -> None:
            n = 0
            while True:
                key = f"{prefix}{w}/{n}"
                rev = await reg.put(key, f"value-{w}-{n}".encode() * 4)
                out.write(f"{key} {rev}\n")
                out.flush()
                n += 1

        await asyncio.gather(*(writer(w) for w in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
