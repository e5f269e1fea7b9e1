"""The naive receiver the benchmark compares against: `request.post()` then `ArqRedis.enqueue_job`.

Run by bench_receiver.py as `python bench_receiver_baseline.py PORT REDIS_URL`; not part of the product.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from aiohttp import web
from arq.connections import ArqRedis, RedisSettings, create_pool

POOL = web.AppKey("pool", ArqRedis)


async def receive(request: web.Request) -> web.Response:
    form = await request.post()
    await request.app[POOL].enqueue_job("process_notification", {k: str(v) for k, v in form.items()})
    return web.Response(text="OK")


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(RedisSettings.from_dsn(redis_url))
        yield
        await app[POOL].aclose()

    app = web.Application(client_max_size=64 * 1024)
    app.cleanup_ctx.append(pool)
    app.router.add_post("/ipn", receive)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    # same event loop and no access log, like `cvco-ipn serve`: the comparison is about the handler
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
