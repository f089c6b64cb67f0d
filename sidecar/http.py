"""HTTP endpoints for Kubernetes probes and Prometheus, on SIDECAR_HTTP_ADDRESS.

* ``/healthz``: the process is alive and the poll thread is turning (its last loop iteration is
  recent; a revoke may legitimately hold it for up to the revoke grace).
* ``/readyz``: the member has joined the group and the sidecar is not draining.
* ``/metrics``: Prometheus exposition of the default registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Probe = Callable[[], tuple[bool, str]]


class HttpServer:
    def __init__(self, host: str, port: int, *, healthy: Probe, ready: Probe) -> None:
        self._host, self._port = host, port
        self._healthy, self._ready = healthy, ready
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    @staticmethod
    def _answer(result: tuple[bool, str]) -> web.Response:
        ok, text = result
        return web.Response(status=200 if ok else 503, text=text + "\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._answer(self._healthy())

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._answer(self._ready())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def poll_liveness(last_poll: Callable[[], float], alive: Callable[[], bool], stale_after_s: float) -> Probe:
    """A /healthz probe: the poll thread runs and its last loop turn is under ``stale_after_s`` old."""

    def probe() -> tuple[bool, str]:
        if not alive():
            return False, "poll thread stopped"
        age = time.monotonic() - last_poll()
        if age > stale_after_s:
            return False, f"poll thread stuck for {age:.1f}s"
        return True, f"ok (last poll {age:.2f}s ago)"

    return probe
