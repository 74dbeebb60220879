"""HTTP/1.1 benchmark: direct to nginx, through nginx as a proxy, and through turnout.

    ./dev bench [--duration 8] [--connections 32] [--rounds 2] [--no-tls] [--workers 2]

Starts (all on 127.0.0.1, each on its own free port, in a temporary directory):

- an nginx backend answering ``200 ok`` (installed by ``./dev bench`` when missing), over
  plain HTTP and, on a second port, over TLS,
- nginx as the reference proxy (one worker, upstream keep-alive),
- turnout with the full stack (identifier, binding cache, balancer, stats, classifier), pure
  Python as installed, and with ``--compiled`` also the same code compiled with mypyc
  (``TURNOUT_COMPILE=1``; built once into ``.venv/turnout-compiled``),
- unless ``--no-tls``, the TLS rows: a CA and a certificate for ``localhost``/``127.0.0.1``
  made with ``cryptography``, and each proxy (nginx, turnout, compiled turnout; the turnouts
  as separate processes) terminating TLS and originating TLS to the backend's TLS port
  (``-tls`` rows: ``listen ssl`` + ``proxy_pass https://`` with ``proxy_ssl_session_reuse``
  and an upstream keep-alive pool; ``servers[].tls`` + ``client.tls``), or terminating TLS
  only and forwarding plain HTTP (``-term`` rows),

pins the proxies to CPU 1 and wrk plus the backend to CPU 0 when the machine has two or more
CPUs, drives each target with ``wrk -t1 -c<connections> -d<duration>s --latency``, and prints
requests/s, p50 and p99 per target, turnout/nginx ratios and turnout's peak RSS. Every process
it starts is stopped by PID. Numbers vary with what else the machine runs: the script also
prints the CPU time the proxies used per request, the most stable figure, and how busy that
kept the proxy's CPU (a proxy below about 95% was not the bottleneck: wrk or the backend was).

With ``--workers N`` it then also runs nginx with N worker processes and turnout with
``--workers N`` (compiled when ``--compiled``), neither pinned, wrk with N threads and the
backend on the same CPUs: on a 2-core machine the load generator competes with the proxy, so
read that table as a ratio, not as capacity. CPU per request there is summed over the proxy's
whole process tree (supervisor and workers; nginx's master and workers).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_req: float | None = None
    #: wrk's own words for the errors ("Socket errors: ...", "Non-2xx ...")
    error_text: str = ""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, host: str | None, args: argparse.Namespace, cpu: int | None) -> Result:
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(
        pinned(cpu, [*argv, url]), capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(out, url)


def parse_wrk(out: str, url: str) -> Result:
    """requests/s, p50, p99 and errors from ``wrk --latency``'s output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    said = []
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
            said.append(m.group(0))
    return Result(url, rps, p50, p99, errors, error_text="; ".join(said))


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured(pid: int, fn: object) -> tuple[Result, float]:
    before = cpu_ticks(pid)
    result: Result = fn()  # type: ignore[operator]
    used = (cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")
    total = result.rps * float(ARGS.duration)
    result.cpu_us_per_req = used / total * 1e6 if total else None
    return result, used


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for ``localhost`` and ``127.0.0.1`` (ECDSA
    P-256, valid for a day), written to ``directory``: ``(ca.pem, server.pem, server.key)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turnout bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


#: TLS servers (backend, nginx) keep a connection for this many requests: the rows measure
#: TLS on kept-alive connections, as turnout does (it has no per-connection request limit),
#: not one full handshake every 1,000 requests (nginx's default keepalive_requests)
TLS_KEEPALIVE_REQUESTS = 1_000_000


def main() -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--rounds", type=int, default=2, help="rounds; medians are reported")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also run turnout with its data path compiled by mypyc",
    )
    p.add_argument(
        "--no-tls",
        action="store_true",
        help="skip the TLS rows (TLS in and out, TLS termination only)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also compare turnout --workers N with nginx worker_processes N (unpinned)",
    )
    ARGS = args = p.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (./dev bench installs it)", file=sys.stderr)
            return 2
    tls = not args.no_tls
    many = (os.cpu_count() or 1) >= 2 and not args.no_pin
    load_cpu, proxy_cpu = (0, 1) if many else (None, None)
    work = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    backend, nginx_proxy, turnout_port, admin_port, compiled_port, compiled_admin = (
        free_port() for _ in range(6)
    )
    # TLS: the backend's TLS port; nginx's TLS-to-TLS and TLS-termination ports; for each
    # turnout build the same two ports and an admin port
    backend_tls, nginx_tls, nginx_term = (free_port() for _ in range(3))
    tls_ports = {
        build: (free_port(), free_port(), free_port()) for build in ("turnout", "compiled")
    }
    compiled_path = build_compiled() if args.compiled else None
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        argv: list[str], log: str, cpu: int | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(work / log, "wb") as out:
            proc = subprocess.Popen(
                pinned(cpu, argv), stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env
            )
        procs.append(proc)
        return proc

    try:
        for d in ("b", "p", "f", "u", "s"):
            (work / d).mkdir()
        temp = " ".join(
            f"{k}_temp_path {work / d};"
            for k, d in (
                ("client_body", "b"),
                ("proxy", "p"),
                ("fastcgi", "f"),
                ("uwsgi", "u"),
                ("scgi", "s"),
            )
        )
        backend_tls_conf = proxy_tls_conf = ""
        if tls:
            ca, crt, key = make_certs(work)
            # (nginx before 1.23.4 leaves TLSv1.3 out of its default ssl_protocols and
            # proxy_ssl_protocols; turnout and wrk speak TLSv1.3 by default)
            ssl_server = (
                f"ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {crt}; ssl_certificate_key {key}; "
                f"keepalive_requests {TLS_KEEPALIVE_REQUESTS};"
            )
            backend_tls_conf = (
                f"server {{ listen 127.0.0.1:{backend_tls} ssl; {ssl_server} "
                f'location / {{ return 200 "ok\\n"; }} }} '
            )
            proxy_tls_conf = (
                f"upstream be_tls {{ server 127.0.0.1:{backend_tls}; keepalive 512; "
                f"keepalive_requests {TLS_KEEPALIVE_REQUESTS}; }} "
                f"server {{ listen 127.0.0.1:{nginx_tls} ssl; {ssl_server} "
                f"location / {{ proxy_pass https://be_tls; "
                f'proxy_http_version 1.1; proxy_set_header Connection ""; '
                f"proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_ssl_session_reuse on; proxy_ssl_verify on; "
                f"proxy_ssl_trusted_certificate {ca}; proxy_ssl_name localhost; "
                f"proxy_ssl_server_name on; }} }} "
                f"server {{ listen 127.0.0.1:{nginx_term} ssl; {ssl_server} "
                f"location / {{ proxy_pass http://be; "
                f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }} '
            )
        common = "worker_processes 1; daemon off; error_log stderr warn; events { worker_connections 4096; }"
        (work / "backend.conf").write_text(
            f"{common} pid {work}/backend.pid; http {{ access_log off; {temp} "
            f'server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "ok\\n"; }} }} '
            f"{backend_tls_conf}}}"
        )
        (work / "proxy.conf").write_text(
            f"{common} pid {work}/proxy.pid; http {{ access_log off; {temp} "
            f"upstream be {{ server 127.0.0.1:{backend}; keepalive 512; }} "
            f"server {{ listen 127.0.0.1:{nginx_proxy}; location / {{ proxy_pass http://be; "
            f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }} '
            f"{proxy_tls_conf}}}"
        )
        (work / "disco").mkdir()
        (work / "disco" / "web").write_text(f"127.0.0.1 {backend}\n")
        (work / "disco" / "web-tls").write_text(f"127.0.0.1 {backend_tls}\n")
        for name, port, admin in (
            ("turnout", turnout_port, admin_port),
            ("compiled", compiled_port, compiled_admin),
        ):
            (work / f"{name}.yaml").write_text(
                f"admin: {{port: {admin}}}\n"
                f"namers: [{{kind: io.l5d.fs, rootDir: {work / 'disco'}}}]\n"
                "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
                f"  servers: [{{port: {port}}}]\n"
            )
            if tls:
                both, term, tls_admin = tls_ports[name]
                server_tls = f"tls: {{certPath: {crt}, keyPath: {key}}}"
                (work / f"{name}-tls.yaml").write_text(
                    f"admin: {{port: {tls_admin}}}\n"
                    f"namers: [{{kind: io.l5d.fs, rootDir: {work / 'disco'}}}]\n"
                    "routers:\n"
                    "- protocol: http\n  label: tls\n"
                    "  dtab: /svc/web => /#/io.l5d.fs/web-tls\n"
                    f"  servers: [{{port: {both}, {server_tls}}}]\n"
                    f"  client: {{tls: {{commonName: localhost, trustCertsBundle: {ca}}}}}\n"
                    "- protocol: http\n  label: term\n"
                    "  dtab: /svc => /#/io.l5d.fs\n"
                    f"  servers: [{{port: {term}, {server_tls}}}]\n"
                )
        configs = ["turnout.yaml"]
        if tls:
            configs.append("turnout-tls.yaml")
            if compiled_path is not None:
                configs.append("compiled-tls.yaml")
        for config in configs:  # fail here, with turnout's own words, on a wrong config
            check = subprocess.run(
                [sys.executable, "-m", "turnout", "check", str(work / config)],
                capture_output=True,
                text=True,
                cwd=work,
            )
            if check.returncode != 0:
                print(f"bench: {config} does not check:\n{check.stdout}{check.stderr}")
                return 1
        start(["nginx", "-p", str(work), "-c", str(work / "backend.conf")], "backend.log", load_cpu)
        nginx = start(
            ["nginx", "-p", str(work), "-c", str(work / "proxy.conf")], "proxy.log", proxy_cpu
        )
        turnouts: dict[str, subprocess.Popen[bytes]] = {}  # process per build and TLS or not
        builds = [("turnout", None)]
        if compiled_path is not None:
            path = os.pathsep.join(filter(None, [str(compiled_path), os.environ.get("PYTHONPATH")]))
            builds.append(("compiled", {**os.environ, "PYTHONPATH": path}))
        for build, env in builds:
            for suffix in ("", "-tls") if tls else ("",):
                config = f"{build}{suffix}.yaml"
                turnouts[build + suffix] = start(
                    [sys.executable, "-m", "turnout", "run", str(work / config)],
                    f"{build}{suffix}.log",
                    proxy_cpu,
                    env,
                )
        turnout = turnouts["turnout"]
        compiled = turnouts.get("compiled")
        ports = [backend, nginx_proxy, turnout_port, *([compiled_port] if compiled else [])]
        if tls:
            ports += [backend_tls, nginx_tls, nginx_term]
            for build, _ in builds:
                ports += tls_ports[build][:2]
        try:
            for port in ports:
                wait_port(port, 30.0)
        except RuntimeError:
            for log in sorted(work.glob("*.log")):
                print(f"bench: {log.name}:\n{log.read_text()[-2000:]}", file=sys.stderr)
            raise
        nginx_worker = _child(nginx.pid) or nginx.pid
        if tls:  # what a client gets on each TLS port (the proxies' upstream hops are alike)
            said = [
                f"backend {tls_version(backend_tls, ca)}",
                f"nginx {tls_version(nginx_tls, ca)}",
            ]
            said += [f"{b} {tls_version(tls_ports[b][0], ca)}" for b, _ in builds]
            print(f"bench: TLS negotiated: {', '.join(said)}", flush=True)
        targets = [
            ("direct", f"http://127.0.0.1:{backend}/", None, None),
            ("nginx", f"http://127.0.0.1:{nginx_proxy}/", None, nginx_worker),
            ("turnout", f"http://127.0.0.1:{turnout_port}/", "web", turnout.pid),
        ]
        if compiled is not None:
            targets.append(("compiled", f"http://127.0.0.1:{compiled_port}/", "web", compiled.pid))
        if tls:
            targets += [
                ("direct-tls", f"https://127.0.0.1:{backend_tls}/", None, None),
                ("nginx-tls", f"https://127.0.0.1:{nginx_tls}/", None, nginx_worker),
            ]
            for build, _ in builds:
                pid = turnouts[f"{build}-tls"].pid
                url = f"https://127.0.0.1:{tls_ports[build][0]}/"
                targets.append((f"{build}-tls", url, "web", pid))
            targets.append(("nginx-term", f"https://127.0.0.1:{nginx_term}/", None, nginx_worker))
            for build, _ in builds:
                pid = turnouts[f"{build}-tls"].pid
                url = f"https://127.0.0.1:{tls_ports[build][1]}/"
                targets.append((f"{build}-term", url, "web", pid))
        for _, url, host, _ in targets:  # warm up (binding, connection pools, caches)
            if host is None:
                continue
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d2s", "-H", f"Host: {host}", url],
                capture_output=True,
                check=True,
            )
        runs: dict[str, list[Result]] = {name: [] for name, *_ in targets}
        for _ in range(args.rounds):
            for name, url, host, pid in targets:
                if pid is None:
                    result = run_wrk(url, host, args, load_cpu)
                else:
                    result, _ = measured(
                        pid, lambda url=url, host=host: run_wrk(url, host, args, load_cpu)
                    )
                runs[name].append(result)
        rss = {name: peak_rss_mb(proc.pid) for name, proc in turnouts.items()}
        print(
            f"\nHTTP/1.1 GET, keep-alive, wrk -t1 -c{args.connections} -d{args.duration}s, "
            f"{args.rounds} round(s), medians; proxies {'pinned to CPU 1' if many else 'not pinned'}"
        )
        if tls:
            print(
                "-tls: TLS from wrk to the proxy and from the proxy to the backend; "
                "-term: TLS from wrk to the proxy only"
            )
        print(
            f"\n{'target':<15}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
            f"{'CPU µs/req':>12}{'proxy CPU':>11}"
        )
        med: dict[str, Result] = {}
        for name, results in runs.items():
            cpu = [r.cpu_us_per_req for r in results if r.cpu_us_per_req]
            m = Result(
                name,
                statistics.median(r.rps for r in results),
                statistics.median(r.p50_ms for r in results),
                statistics.median(r.p99_ms for r in results),
                sum(r.errors for r in results),
                statistics.median(cpu) if cpu else None,
            )
            med[name] = m
            cpu_text = f"{m.cpu_us_per_req:.1f}" if m.cpu_us_per_req else "-"
            busy = f"{m.cpu_us_per_req * m.rps / 1e4:.0f}%" if m.cpu_us_per_req else "-"
            print(
                f"{name:<15}{m.rps:>12,.0f}{m.p50_ms:>10.3f}{m.p99_ms:>10.3f}{m.errors:>8}"
                f"{cpu_text:>12}{busy:>11}"
            )
        for name, results in runs.items():
            for r in results:
                if r.errors:
                    print(f"  {name}: {r.error_text}")
        print()
        for suffix in ("", "-tls", "-term") if tls else ("",):
            n = med["nginx" + suffix]
            for build, _ in builds:
                name = build + suffix
                t = med[name]
                cpu = (
                    f", CPU per request {t.cpu_us_per_req / n.cpu_us_per_req:.2f}x"
                    if t.cpu_us_per_req and n.cpu_us_per_req
                    else ""
                )
                mem = rss.get(name) or rss.get(build + "-tls")
                print(
                    f"{name}/nginx{suffix}: requests/s {t.rps / n.rps:.2f}, "
                    f"p99 {t.p99_ms / n.p99_ms:.2f}x{cpu}; peak RSS {mem:.1f} MB"
                )
        if tls:
            print()
            for suffix, what in (("-tls", "TLS both ways"), ("-term", "TLS termination")):
                added = []
                for name in ("nginx", *(build for build, _ in builds)):
                    plain, ciphered = med[name].cpu_us_per_req, med[name + suffix].cpu_us_per_req
                    if plain and ciphered:
                        added.append(f"{name} +{ciphered - plain:.1f} µs ({ciphered / plain:.2f}x)")
                print(f"{what} adds CPU per request: {', '.join(added)}")
        if args.workers > 1:
            build, env = builds[-1]  # the compiled build when there is one
            workers_table(args, work, backend, temp, build, env, start)
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(
                    signal.SIGTERM if proc.args[-1].endswith(".yaml") else signal.SIGQUIT
                )
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def build_compiled() -> Path:
    """The plugin compiled with mypyc, installed into a directory (built once per source)."""
    plugin = ROOT / "plugins" / "turnout-protocol-http"
    digest = hashlib.sha1()
    # what the build reads: the plugin's sources and build files, and the core's sources
    # (the compiled modules may compile core modules in, and are type-checked against it)
    sources = [plugin / "setup.py", plugin / "pyproject.toml", *sorted(plugin.glob("_build/*"))]
    sources += sorted((plugin / "src").rglob("*.py"))
    sources += sorted((ROOT / "core" / "src").rglob("*.py"))
    for f in sources:
        if f.is_file():
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    target = Path(sys.prefix) / "turnout-compiled" / digest.hexdigest()[:12]
    if not (target / "turnout_protocol_http").exists():
        print(
            "bench: compiling the HTTP data path with mypyc (once; about a minute)...", flush=True
        )
        env = {**os.environ, "TURNOUT_COMPILE": "1"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                str(plugin),
            ],
            env=env,
            check=True,
        )
    return target


def tls_version(port: int, ca: Path) -> str:
    """The TLS version and cipher a verifying client negotiates with 127.0.0.1:``port``."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        cipher = conn.cipher()
        return f"{conn.version()} {cipher[0] if cipher else '?'}"


def tree_ticks(pid: int) -> int:
    """CPU ticks of ``pid`` and all its descendants (a supervisor and its workers)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            total += cpu_ticks(current)
            kids = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(k) for k in kids)
    return total


def workers_table(
    args: argparse.Namespace,
    work: Path,
    backend: int,
    temp: str,
    build: str,
    env: dict[str, str] | None,
    start: object,
) -> None:
    """nginx with ``worker_processes N`` against turnout ``--workers N``, unpinned."""
    n = args.workers
    nginx_port, turnout_port, admin = free_port(), free_port(), free_port()
    (work / "proxy-workers.conf").write_text(
        f"worker_processes {n}; daemon off; error_log stderr warn; "
        f"events {{ worker_connections 4096; }} pid {work}/proxy-workers.pid; "
        f"http {{ access_log off; {temp} "
        f"upstream be {{ server 127.0.0.1:{backend}; keepalive 512; }} "
        f"server {{ listen 127.0.0.1:{nginx_port} reuseport; location / {{ proxy_pass http://be; "
        f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}'
    )
    (work / "workers.yaml").write_text(
        f"admin: {{port: {admin}}}\n"
        f"namers: [{{kind: io.l5d.fs, rootDir: {work / 'disco'}}}]\n"
        "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
        f"  servers: [{{port: {turnout_port}}}]\n"
    )
    starter = start  # (start(argv, log, cpu, env) -> Popen, from main)
    nginx = starter(  # type: ignore[operator]
        ["nginx", "-p", str(work), "-c", str(work / "proxy-workers.conf")],
        "proxy-workers.log",
        None,
    )
    turnout = starter(  # type: ignore[operator]
        [
            sys.executable,
            "-m",
            "turnout",
            "run",
            "--workers",
            str(n),
            str(work / "workers.yaml"),
        ],
        "workers.log",
        None,
        env,
    )
    for port in (nginx_port, turnout_port):
        wait_port(port, 60.0)
    time.sleep(2.0)  # every worker listening (the first one answering is not enough)
    conns = max(args.connections, 16 * n)
    wrk_args = argparse.Namespace(**{**vars(args), "connections": conns})
    targets = [
        ("nginx", f"http://127.0.0.1:{nginx_port}/", None, nginx.pid),
        (f"{build}", f"http://127.0.0.1:{turnout_port}/", "web", turnout.pid),
    ]
    for _, url, host, _ in targets:
        subprocess.run(
            ["wrk", f"-t{n}", "-c16", "-d2s", *(["-H", f"Host: {host}"] if host else []), url],
            capture_output=True,
            check=True,
        )
    runs: dict[str, list[Result]] = {name: [] for name, *_ in targets}
    for _ in range(args.rounds):
        for name, url, host, pid in targets:
            argv = ["wrk", f"-t{n}", f"-c{conns}", f"-d{args.duration}s", "--latency"]
            argv += ["-H", f"Host: {host}"] if host else []
            before = tree_ticks(pid)
            out = subprocess.run([*argv, url], capture_output=True, text=True, check=True)
            used = (tree_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")
            result = parse_wrk(out.stdout, url)
            total = result.rps * float(wrk_args.duration)
            result.cpu_us_per_req = used / total * 1e6 if total else None
            runs[name].append(result)
    print(
        f"\n{n} workers each: nginx worker_processes {n}, turnout --workers {n} ({build}); "
        f"wrk -t{n} -c{conns} -d{args.duration}s, {args.rounds} round(s), medians; "
        "nothing pinned (wrk, the backend and the proxy share the CPUs: read it as a ratio)"
    )
    print(
        f"\n{'target':<15}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'CPU µs/req':>12}"
    )
    med: dict[str, Result] = {}
    for name, results in runs.items():
        cpu = [r.cpu_us_per_req for r in results if r.cpu_us_per_req]
        m = med[name] = Result(
            name,
            statistics.median(r.rps for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.errors for r in results),
            statistics.median(cpu) if cpu else None,
        )
        cpu_text = f"{m.cpu_us_per_req:.1f}" if m.cpu_us_per_req else "-"
        print(
            f"{name:<15}{m.rps:>12,.0f}{m.p50_ms:>10.3f}{m.p99_ms:>10.3f}{m.errors:>8}"
            f"{cpu_text:>12}"
        )
    t, ng = med[build], med["nginx"]
    print(
        f"\n{build} --workers {n} / nginx {n} workers: requests/s {t.rps / ng.rps:.2f}, "
        f"p99 {t.p99_ms / ng.p99_ms:.2f}x"
    )


def _child(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
