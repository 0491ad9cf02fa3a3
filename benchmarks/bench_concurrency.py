"""Throughput of ``lpo-ci eval`` against a loopback OpenAI-compatible server.

Scores one template on a generated user dataset (default 1000 examples)
through the real CLI in a subprocess, against ``FakeOpenAIServer`` with a
fixed per-request latency (default 100 ms), at several concurrency levels:

* cold run (empty response cache): wall time of the command, minus the fixed
  start-up cost measured in the same run (the same command on 1 example, less
  one request's latency), divided by the ideal ``samples * latency /
  concurrency``. Target: ratio <= 1.25 at concurrency 32.
* warm rerun of the same command (same cache): must make 0 server requests.

Also printed, to locate a bottleneck: the client's CPU time (if it is close to
the request phase, the client's event loop, not the network, sets the pace),
the server-side request phase (first arrival to last answer) and the peak
number of requests in flight as seen by the server.

Before that, a raw-socket load probe checks that the server itself can hold the
highest concurrency (its ratio should be ~1.0), so a slow result is not the
server's fault.

Run from the repository root::

    python benchmarks/bench_concurrency.py                # 32, then 8 and 64
    python benchmarks/bench_concurrency.py --concurrency 32 --context ""
    python benchmarks/bench_concurrency.py --server thread --strict

Exit status: 0 ok; 1 a warm rerun made requests, a run failed, or its answers
were wrong; 2 (with --strict) the concurrency-32 ratio missed its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TEMPLATE = "{# lpo:\n  dataset: data.jsonl\n  scorer: exact\n#}\nQuestion: {{ question }}\nAnswer:"
PYPROJECT = '[project]\nname = "bench-project"\nversion = "0"\n\n[tool.lpo_ci]\nmodel = "openai/fake"\n'
_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def answer(prompt: str) -> str:
    """The fake model: always right, so the run's accuracy must be 100%."""
    match = _QUESTION.search(prompt)
    return str(int(match[1]) + int(match[2])) if match else "I don't know"


def write_dataset(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            a, b = i * 7 + 3, i % 97
            handle.write(json.dumps({"question": f"What is {a} + {b}?", "target": str(a + b)}) + "\n")


# --------------------------------------------------------------------------
# The server: in this process (a thread) or in a child process.
# --------------------------------------------------------------------------

def _instrumented_server(latency: float):
    """A FakeOpenAIServer that also records each request's arrival time."""
    from tests.support.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(answer=answer, latency=latency)
    arrivals: list[float] = []
    register = server._register

    def recording_register(prompts):
        arrivals.append(time.monotonic())
        return register(prompts)

    server._register = recording_register
    return server, arrivals


def serve_main(latency: float) -> None:
    """Child-process mode: print the URL, then answer 'stats' / 'reset' lines on stdin."""
    server, arrivals = _instrumented_server(latency)
    with server:
        print(server.url, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps({"requests": server.requests, "failures": server.failures,
                                  "arrivals": arrivals, "cpu": time.process_time()}), flush=True)
            elif command == "reset":
                server.reset_counts()
                arrivals.clear()
                print("{}", flush=True)


class ThreadServer:
    kind = "thread"

    def __init__(self, latency: float):
        self.server, self.arrivals = _instrumented_server(latency)
        self.server.start()
        self.url = self.server.url

    def stats(self) -> dict:
        # process_time covers the whole benchmark process, which is idle apart from the server.
        return {"requests": self.server.requests, "failures": self.server.failures,
                "arrivals": list(self.arrivals), "cpu": time.process_time()}

    def reset(self) -> None:
        self.server.reset_counts()
        self.arrivals.clear()

    def close(self) -> None:
        self.server.stop()


class ProcessServer:
    kind = "process"

    def __init__(self, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"server did not start (got {self.url!r})")

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------
# Server capacity probe: a lean asyncio client on raw sockets (keep-alive).
# --------------------------------------------------------------------------

def probe_main(url: str, n: int, concurrency: int) -> None:
    """Child-process mode: send n chat requests over `concurrency` connections; print the wall time."""
    match = re.match(r"http://([^:/]+):(\d+)(/.*)?$", url)
    host, port, prefix = match[1], int(match[2]), (match[3] or "").rstrip("/")
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "What is 1 + 2?"}]}).encode()
    request = (f"POST {prefix}/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    remaining = [n]

    async def worker():
        reader, writer = await asyncio.open_connection(host, port)
        while remaining[0] > 0:
            remaining[0] -= 1
            writer.write(request)
            await writer.drain()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        writer.close()

    async def main():
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started

    print(json.dumps({"wall": asyncio.run(main())}), flush=True)


def probe_server(server, n: int, concurrency: int, latency: float) -> dict:
    server.reset()
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", server.url,
                          str(n), str(concurrency)], capture_output=True, text=True, check=True)
    wall = json.loads(out.stdout)["wall"]
    stats = server.stats()
    server.reset()
    ideal = n * latency / concurrency
    return {"n": n, "concurrency": concurrency, "wall": wall, "ideal": ideal, "ratio": wall / ideal,
            "requests": stats["requests"]}


# --------------------------------------------------------------------------
# Running the CLI.
# --------------------------------------------------------------------------

@dataclass
class Run:
    wall: float
    returncode: int
    requests: int
    client_cpu: float
    server_cpu: float
    phase: float | None        # first arrival -> last arrival + latency, seconds
    peak_in_flight: int
    report: dict | None
    stderr: str

    @property
    def item(self) -> dict:
        return (self.report or {}).get("templates", [{}])[0] if self.report else {}

    @property
    def accuracy(self) -> float | None:
        return self.item.get("head_accuracy")

    @property
    def usage(self) -> dict:
        return self.item.get("usage") or {}


def lpo_ci_command() -> list[str]:
    exe = Path(sys.executable).with_name("lpo-ci")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("lpo-ci")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from lpo_ci.cli import main; sys.exit(main())"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.pop("LPO_CI_CACHE_DIR", None)
    return env


def peak_in_flight(arrivals: list[float], latency: float) -> int:
    """Most requests the server held at once (each is held ~latency after it arrives)."""
    arrivals = sorted(arrivals)
    peak, start = 0, 0
    for end, t in enumerate(arrivals):
        while arrivals[start] <= t - latency:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def run_cli(server, project: Path, *, samples: int, concurrency: int, cache_dir: Path,
            latency: float, report: Path) -> Run:
    server.reset()
    report.unlink(missing_ok=True)
    command = [*lpo_ci_command(), "eval", "prompts/t.j2", "--model", "openai/fake",
               "--api-base", server.url, "--samples", str(samples), "--concurrency", str(concurrency),
               "--no-base", "--cache-dir", str(cache_dir), "--report", str(report)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_before = server.stats()["cpu"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=project, capture_output=True, text=True, env=child_env())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = server.stats()
    arrivals = stats["arrivals"]
    phase = (max(arrivals) - min(arrivals) + latency) if arrivals else None
    data = json.loads(report.read_text()) if report.is_file() else None
    return Run(wall=wall, returncode=proc.returncode, requests=stats["requests"],
               client_cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
               server_cpu=stats["cpu"] - server_cpu_before, phase=phase,
               peak_in_flight=peak_in_flight(arrivals, latency), report=data, stderr=proc.stderr)


def version_time() -> float:
    started = time.perf_counter()
    subprocess.run([*lpo_ci_command(), "--version"], capture_output=True, check=True, env=child_env())
    return time.perf_counter() - started


def import_litellm_time() -> float:
    code = "from lpo_ci.llm import import_litellm; import_litellm()"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=child_env())
    return time.perf_counter() - started


# --------------------------------------------------------------------------

def fmt(value, spec=".2f", none="-"):
    return none if value is None else format(value, spec)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def machine_load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    busy = one > 0.5 * (os.cpu_count() or 1)
    return f"load average {one:.2f} / {five:.2f}" + (" (BUSY: other work shares the CPUs, expect noise)"
                                                     if busy else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="dataset size (default 1000)")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, s")
    parser.add_argument("--concurrency", type=int, default=32, help="the gated concurrency (default 32)")
    parser.add_argument("--context", default="8,64", help="other concurrency levels, comma-separated")
    parser.add_argument("--target", type=float, default=1.25, help="max (wall - startup) / ideal")
    parser.add_argument("--repeat", type=int, default=1, help="cold+warm runs per level; medians shown")
    parser.add_argument("--server", choices=["process", "thread"], default="process",
                        help="run the fake server in a child process (default) or a thread of this one")
    parser.add_argument("--no-probe", action="store_true", help="skip the server capacity probe")
    parser.add_argument("--strict", action="store_true", help="exit 2 if the main ratio misses the target")
    parser.add_argument("--keep", metavar="DIR", help="build the project in DIR and keep it")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs=3, metavar=("URL", "N", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        serve_main(args.latency)
        return 0
    if args.probe:
        probe_main(args.probe[0], int(args.probe[1]), int(args.probe[2]))
        return 0

    levels = [args.concurrency] + [int(c) for c in args.context.split(",") if c.strip()
                                   and int(c) != args.concurrency]
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lpo-bench-"))
    project = workdir / "project"
    (project / "prompts").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "prompts" / "t.j2").write_text(TEMPLATE)
    write_dataset(project / "data.jsonl", args.samples)
    report = workdir / "r.json"
    fresh = iter(range(10 ** 6))

    def new_cache() -> Path:
        path = workdir / f"cache-{next(fresh)}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    print(f"lpo-ci concurrency benchmark: {args.samples} examples, {args.latency * 1000:.0f} ms "
          f"per request, server in a {args.server}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, {machine_load()}")
    server = ProcessServer(args.latency) if args.server == "process" else ThreadServer(args.latency)
    problems: list[str] = []
    main_ratio = None

    def check(run: Run, what: str, requests: int) -> None:
        if run.returncode != 0:
            problems.append(f"{what} exited {run.returncode}: {run.stderr.strip()[-800:]}")
        elif run.accuracy != 1.0:
            problems.append(f"{what}: accuracy {run.accuracy}, expected 1.0")
        if run.requests != requests:
            problems.append(f"{what} made {run.requests} server requests, expected {requests}")

    def one_example() -> Run:
        """The fixed cost: interpreter start, imports (litellm included), data, 1 request, report."""
        run = run_cli(server, project, samples=1, concurrency=args.concurrency, cache_dir=new_cache(),
                      latency=args.latency, report=report)
        check(run, "1-example run", 1)
        return run

    try:
        if not args.no_probe:
            top = max(levels)
            probe = probe_server(server, args.samples, top, args.latency)
            print(f"server probe (raw asyncio client, {probe['n']} requests at concurrency "
                  f"{top}): {probe['wall']:.2f} s, ideal {probe['ideal']:.2f} s, "
                  f"ratio {probe['ratio']:.2f} -> "
                  + ("server is not the bottleneck" if probe["ratio"] <= 1.1
                     else "SERVER IS A BOTTLENECK (try --server process)"))

        one_example()  # warm the OS file cache and __pycache__; not timed
        first = one_example()
        warm_cache = workdir / f"cache-{next(fresh) - 1}"
        warm_one = run_cli(server, project, samples=1, concurrency=args.concurrency, cache_dir=warm_cache,
                           latency=args.latency, report=report)
        check(warm_one, "1-example warm rerun", 0)
        print(f"start-up: lpo-ci --version {version_time():.2f} s; import litellm alone "
              f"{import_litellm_time():.2f} s; 1-example cold run {first.wall:.2f} s "
              f"({first.client_cpu:.2f} s CPU); 1-example warm rerun (no litellm import) "
              f"{warm_one.wall:.2f} s")
        print()

        rows = []
        for concurrency in levels:
            ideal = args.samples * args.latency / concurrency
            samples = []
            for _ in range(args.repeat):
                # Start-up cost measured in the same run: 1-example cold runs right before and after.
                before = one_example()
                cache_dir = new_cache()
                cold = run_cli(server, project, samples=args.samples, concurrency=concurrency,
                               cache_dir=cache_dir, latency=args.latency, report=report)
                warm = run_cli(server, project, samples=args.samples, concurrency=concurrency,
                               cache_dir=cache_dir, latency=args.latency, report=report)
                after = one_example()
                check(cold, f"c={concurrency} cold run", args.samples)
                check(warm, f"c={concurrency} warm rerun", 0)
                startup = (before.wall + after.wall) / 2 - args.latency
                startup_cpu = (before.client_cpu + after.client_cpu) / 2
                net = cold.wall - startup
                calls = cold.usage.get("calls")
                samples.append({
                    "wall": cold.wall, "startup": startup, "net": net, "ratio": net / ideal,
                    "phase": cold.phase, "phase_ratio": cold.phase / ideal if cold.phase else None,
                    "peak": cold.peak_in_flight,
                    "mean_call": (cold.usage.get("latency", 0) / calls) if calls else None,
                    "cpu": cold.client_cpu - startup_cpu,
                    "cpu_share": (cold.client_cpu - startup_cpu) / net if net > 0 else None,
                    "server_cpu": cold.server_cpu, "requests": cold.requests,
                    "warm_wall": warm.wall, "warm_requests": warm.requests,
                    "warm_hits": warm.usage.get("cache_hits"),
                })

            def med(key, samples=samples):
                values = [s[key] for s in samples if s[key] is not None]
                return statistics.median(values) if values else None

            ratio = med("ratio")
            if concurrency == args.concurrency:
                main_ratio = ratio
            rows.append([
                str(concurrency), f"{ideal:.3f}", f"{med('wall'):.2f}", f"{med('startup'):.2f}",
                f"{med('net'):.2f}", f"{ratio:.2f}",
                ("ok" if ratio <= args.target else "MISS") if concurrency == args.concurrency else "-",
                fmt(med("phase")), fmt(med("phase_ratio")), str(max(s["peak"] for s in samples)),
                fmt(med("mean_call"), ".3f"), f"{med('cpu'):.2f}", fmt(med("cpu_share"), ".0%"),
                f"{med('server_cpu'):.2f}", str(max(s["requests"] for s in samples)),
                f"{med('warm_wall'):.2f}", str(max(s["warm_requests"] for s in samples)),
                str(min((s["warm_hits"] or 0) for s in samples)),
            ])
        print_table(["conc", "ideal s", "wall s", "startup s", "net s", "ratio", f"<={args.target:g}",
                     "srv phase s", "phase ratio", "peak inflight", "mean call s", "client cpu s",
                     "cpu/net", "server cpu s", "requests", "warm wall s", "warm reqs", "warm hits"], rows)
        print()
        print("ratio = (wall - startup) / ideal, ideal = samples * latency / concurrency, startup = "
              "mean of 1-example cold runs just before and after, less one latency; srv phase = "
              "first request arrival to last answer as the server saw it (phase ratio = srv phase / "
              "ideal, independent of the start-up estimate); mean call = client-observed seconds per "
              f"model call (server latency {args.latency:g} s); client cpu = user+sys CPU of the "
              "lpo-ci process beyond the 1-example runs'; cpu/net = client cpu / net (near 100%: "
              f"the client's CPU sets the pace)" + (f"; medians of {args.repeat} runs" if args.repeat > 1
                                                     else ""))
        print(f"finished with {machine_load()}")
    finally:
        server.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.strict and main_ratio is not None and main_ratio > args.target:
        print(f"concurrency {args.concurrency}: ratio {main_ratio:.2f} > target {args.target:g}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
