"""A bounded load of Thrift calls, directly to a backend and through turnout.

    python plugins-contrib/turnout-protocol-thrift/bench/thrift_bench.py [--seconds 3] [--clients 4]

Starts a thriftpy2 backend (framed, binary) and a turnout with one thrift router in front of
it, on 127.0.0.1, then runs ``--clients`` client processes calling ``echo`` in a loop for
``--seconds`` each, first directly against the backend and then through turnout, and prints
calls/s for each and their ratio. Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from typing import Any


def client_loop(port: int, seconds: float, out: Any) -> None:
    from thriftpy2.rpc import make_client  # type: ignore[import-untyped]
    from turnout_protocol_thrift.testing import demo, factories

    client = make_client(demo.Demo, "127.0.0.1", port, timeout=10000, **factories())
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.echo("bench")
        n += 1
    client.close()
    out.put(n)


def run(port: int, seconds: float, clients: int) -> float:
    out: Any = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=client_loop, args=(port, seconds, out))
        for _ in range(clients)
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join(timeout=10)
    return total / max(time.monotonic() - started, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    seconds = min(max(args.seconds, 0.5), 30.0)
    clients = min(max(args.clients, 1), 16)

    from turnout.testing import DiscoDir, TurnoutProcess
    from turnout_protocol_thrift.testing import Backend, thrift_config

    backend = Backend("bench")
    with tempfile.TemporaryDirectory(prefix="thrift-bench-") as tmp:
        disco = DiscoDir(tmp)
        disco.write("bench", ("127.0.0.1", backend.port))
        config = thrift_config(disco, router={"dtab": "/svc => /#/io.l5d.fs/bench;"})
        proxy = TurnoutProcess(config)
        try:
            proxy.start()
            direct = run(backend.port, seconds, clients)
            through = run(proxy.port, seconds, clients)
        finally:
            proxy.stop()
            proxy.cleanup()
            backend.stop()
    print(f"clients: {clients}, seconds: {seconds:g} each")
    print(f"direct to the backend: {direct:8.0f} calls/s")
    print(f"through turnout:       {through:8.0f} calls/s")
    print(f"ratio (turnout/direct): {through / direct:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
