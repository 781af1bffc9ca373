"""The faults, one after another while the load runs. Each returns when its fault has ended
(the server or replica is back, or the proxy passes again); recovery is measured from then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.chaos.cluster import Cluster
from tests.chaos.proxy import ProxyThread
from tests.chaos.servers import Servers


@dataclass
class Env:
    servers: Servers
    proxies: ProxyThread
    cluster: Cluster


@dataclass
class Fault:
    name: str
    run: Callable[[Env], Awaitable[None]]
    replica: int | None = None  # the replica it kills or freezes (its probes do not count)
    outage: bool = False  # a dependency is unreachable throughout: readiness must say 503


def _blocking(fn: Callable[[], None]) -> Awaitable[None]:
    return asyncio.get_running_loop().run_in_executor(None, fn)


def sigkill(i: int, down: float = 1.0) -> Fault:
    async def run(e: Env) -> None:
        r = e.cluster.replicas[i]
        await r.kill()
        await asyncio.sleep(down)
        await r.start()

    return Fault(f"SIGKILL replica{i}", run, replica=i)


def sigstop(i: int, seconds: float) -> Fault:
    async def run(e: Env) -> None:
        r = e.cluster.replicas[i]
        r.freeze()
        await asyncio.sleep(seconds)
        r.thaw()

    return Fault(f"SIGSTOP replica{i} {seconds:g}s", run, replica=i)


def pg_reset() -> Fault:
    async def run(e: Env) -> None:
        await e.proxies.run(e.proxies["pg"].reset_all())

    return Fault("PostgreSQL reset-all", run)


def pg_refuse(seconds: float) -> Fault:
    async def run(e: Env) -> None:
        await e.proxies.run(e.proxies["pg"].refuse(seconds))

    return Fault(f"PostgreSQL refuse {seconds:g}s", run, outage=True)


def pg_blackhole(seconds: float) -> Fault:
    async def run(e: Env) -> None:
        await e.proxies.run(e.proxies["pg"].blackhole(seconds))

    return Fault(f"PostgreSQL blackhole {seconds:g}s", run, outage=True)


def pg_latency(seconds: float, ms: float) -> Fault:
    async def run(e: Env) -> None:
        await e.proxies.run(e.proxies["pg"].add_latency(seconds, ms))

    return Fault(f"PostgreSQL +{ms:g}ms {seconds:g}s", run)


def pg_restart(mode: str) -> Fault:
    async def run(e: Env) -> None:
        await _blocking(lambda: e.servers.pg.restart(mode))

    return Fault(f"pg_ctl restart -m {mode}", run)


def rabbit_reset() -> Fault:
    async def run(e: Env) -> None:
        await e.proxies.run(e.proxies["amqp"].reset_all())

    return Fault("RabbitMQ reset-all", run)


def rabbit_down(seconds: float) -> Fault:
    async def run(e: Env) -> None:
        await _blocking(e.servers.rabbit.stop_app)
        await asyncio.sleep(seconds)
        await _blocking(e.servers.rabbit.start_app)

    return Fault(f"RabbitMQ down {seconds:g}s", run, outage=True)


def rabbit_restart() -> Fault:
    async def run(e: Env) -> None:
        await _blocking(e.servers.rabbit.restart)

    return Fault("RabbitMQ restart", run)


# The blackhole goes last: on a service that does not recover from it, every later fault's
# figures would measure the blackhole instead.
FULL: list[Fault] = [
    sigkill(0),
    pg_reset(),
    sigkill(1),
    pg_refuse(10),
    sigstop(0, 20),
    pg_restart("fast"),
    rabbit_reset(),
    sigkill(0),
    pg_restart("immediate"),
    rabbit_down(10),
    sigkill(1),
    rabbit_restart(),
    pg_latency(20, 200),
    sigstop(1, 20),
    pg_blackhole(20),
]

# About a minute of faults: one of each kind of harm that has bitten (a process death, every
# database connection dropped, a real database restart, every broker connection dropped,
# and the half-open database), each short.
SHORT: list[Fault] = [
    sigkill(0),
    pg_reset(),
    pg_restart("fast"),
    rabbit_reset(),
    pg_blackhole(10),
]
