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

Client CPU per call, on a second server that answers at once (0 ms): the
lpo-ci process's user+sys CPU for N examples less that for 1, over N - 1.
With ``--baseline-code DIR`` (a checkout of another commit, e.g. the branch
point: ``git worktree add /tmp/base <commit>``) the same runs are made with
that checkout's ``lpo_ci`` on ``PYTHONPATH``, interleaved with this one's
(ABBA), and the ratio is printed: same script, same machine, same minute.
Target: this checkout's CPU per call at most half the baseline's. Also
printed per level: the cold run's whole wall time (start-up included) over
the ideal; target <= 2 at concurrency 32.

With ``--modes chat,completion`` each variant runs in both modes, and
``--batch-size 1,8`` adds this checkout in completion mode with ``--batch-size 8``
(several prompts per request); all variants are interleaved in one run, and
the server's count of prompts is what is checked.

With ``--peers``, the same 1,000 questions, prompt, server and concurrency
are run through promptfoo and lm-evaluation-harness when they are installed
(see benchmarks/README.md), cold then warm, for a side-by-side.

Run from the repository root::

    python benchmarks/bench_concurrency.py                # 32, then 8 and 64
    python benchmarks/bench_concurrency.py --concurrency 32 --context ""
    python benchmarks/bench_concurrency.py --server thread --strict
    python benchmarks/bench_concurrency.py --baseline-code /tmp/base --repeat 3 --peers
    python benchmarks/bench_concurrency.py --context "" --modes chat,completion --batch-size 1,8

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
    """A FakeOpenAIServer that also records each request's arrival time and number of prompts."""
    from tests.support.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(answer=answer, latency=latency)
    arrivals: list[tuple[float, int]] = []
    register = server._register

    def recording_register(prompts, *args, **options):
        arrivals.append((time.monotonic(), len(prompts)))
        return register(prompts, *args, **options)

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
                                  "prompts": sum(n for _, n in arrivals), "arrivals": arrivals,
                                  "cpu": time.process_time()}), flush=True)
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
                "prompts": sum(n for _, n in self.arrivals), "arrivals": list(self.arrivals),
                "cpu": time.process_time()}

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

@dataclass(frozen=True)
class Variant:
    """What is measured: a checkout of lpo-ci (None: this one), a mode, prompts per request."""

    label: str
    code: Path | None = None
    mode: str = "chat"
    batch_size: int = 1

    def cli_args(self) -> list[str]:
        # Chat is the CLI's default: its command is the same for any checkout.
        return ((["--mode", self.mode] if self.mode != "chat" else [])
                + (["--batch-size", str(self.batch_size)] if self.batch_size > 1 else []))


@dataclass
class Run:
    wall: float
    returncode: int
    requests: int
    prompts: int               # prompts the server received (more than requests when batched)
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


def child_env(code: Path | None = None) -> dict[str, str]:
    """The CLI's environment; ``code``: another checkout whose lpo_ci is imported instead."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.pop("LPO_CI_CACHE_DIR", None)
    return env


def peak_in_flight(arrivals: list[tuple[float, int]], latency: float) -> int:
    """Most prompts the server held at once (each request is held ~latency after it arrives)."""
    arrivals = sorted(arrivals)
    peak, start, held = 0, 0, 0
    for end, (t, prompts) in enumerate(arrivals):
        held += prompts
        while start < end and arrivals[start][0] <= t - latency:
            held -= arrivals[start][1]
            start += 1
        peak = max(peak, held)
    return peak


def run_cli(server, project: Path, *, samples: int, concurrency: int, cache_dir: Path,
            latency: float, report: Path, variant: Variant = Variant("this checkout")) -> Run:
    server.reset()
    report.unlink(missing_ok=True)
    command = [*lpo_ci_command(), "eval", "prompts/t.j2", "--model", "openai/fake",
               "--api-base", server.url, "--samples", str(samples), "--concurrency", str(concurrency),
               *variant.cli_args(), "--no-base", "--cache-dir", str(cache_dir), "--report", str(report)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_before = server.stats()["cpu"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=project, capture_output=True, text=True, env=child_env(variant.code))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = server.stats()
    arrivals = [tuple(a) for a in stats["arrivals"]]
    times = [t for t, _ in arrivals]
    phase = (max(times) - min(times) + latency) if times else None
    data = json.loads(report.read_text()) if report.is_file() else None
    return Run(wall=wall, returncode=proc.returncode, requests=stats["requests"], prompts=stats["prompts"],
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
# Peers: the same questions, prompt, server and concurrency through other tools.
# --------------------------------------------------------------------------

PROMPTFOO_CONFIG = """\
description: lpo-ci benchmark side-by-side
prompts:
  - "Question: {{{{question}}}}\\nAnswer:"
providers:
  - id: openai:chat:fake
    config:
      apiBaseUrl: {url}
      apiKey: sk-none
      temperature: 0
      max_tokens: 256
tests: file://{tests}
"""

LM_EVAL_TASK = """\
task: lpo_ci_bench_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 256
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def _timed(command: list[str], *, cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc


def run_peers(args, server, project: Path, workdir: Path, problems: list[str]) -> None:
    """promptfoo and lm-eval, cold (empty cache) then warm, when installed."""
    import csv

    rows, data = [], project / "data.jsonl"
    questions = [json.loads(line) for line in data.read_text().splitlines()]
    promptfoo = args.promptfoo or shutil.which("promptfoo")
    lm_eval = args.lm_eval or shutil.which("lm-eval")
    if promptfoo:
        folder = workdir / "promptfoo"
        folder.mkdir(exist_ok=True)
        with (folder / "tests.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question", "__expected"])
            writer.writerows([[q["question"], q["target"]] for q in questions])
        (folder / "promptfooconfig.yaml").write_text(
            PROMPTFOO_CONFIG.format(url=server.url, tests=folder / "tests.csv"))
        env = {**child_env(), "PROMPTFOO_CACHE_PATH": str(folder / "cache"),
               "PROMPTFOO_CONFIG_DIR": str(folder / "home"), "PROMPTFOO_DISABLE_TELEMETRY": "1",
               "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_DISABLE_SHARING": "1", "OPENAI_API_KEY": "sk-none"}
        for phase in ("cold", "warm"):
            server.reset()
            wall, proc = _timed([*promptfoo.split(), "eval", "-c", str(folder / "promptfooconfig.yaml"),
                                 "--max-concurrency", str(args.concurrency), "--no-progress-bar", "--no-table",
                                 "-o", str(folder / f"{phase}.json")], cwd=folder, env=env)
            passed = None
            if (folder / f"{phase}.json").is_file():
                stats = json.loads((folder / f"{phase}.json").read_text()).get("results", {}).get("stats", {})
                passed = stats.get("successes")
            if passed is None:
                problems.append(f"promptfoo {phase} run failed: {(proc.stderr or proc.stdout)[-600:]}")
            rows.append(["promptfoo", phase, f"{wall:.2f}", str(server.stats()["requests"]), str(passed)])
    else:
        print("promptfoo: not installed (npm install -g promptfoo), skipped")
    if lm_eval:
        folder = workdir / "lm-eval"
        (folder / "tasks").mkdir(parents=True, exist_ok=True)
        (folder / "tasks" / "lpo_ci_bench_sums.yaml").write_text(LM_EVAL_TASK.format(data=data))
        env = {**child_env(), "OPENAI_API_KEY": "sk-none", "TOKENIZERS_PARALLELISM": "false"}
        for phase in ("cold", "warm"):
            server.reset()
            wall, proc = _timed([*lm_eval.split(), "--model", "local-chat-completions", "--model_args",
                                 f"model=fake,base_url={server.url}/chat/completions,num_concurrent="
                                 f"{args.concurrency},max_retries=1,tokenized_requests=False",
                                 "--tasks", "lpo_ci_bench_sums", "--include_path", str(folder / "tasks"),
                                 "--apply_chat_template", "--use_cache", str(folder / "cache"),
                                 "--output_path", str(folder / phase)], cwd=folder, env=env)
            match = re.search(r"exact_match\S*\s*\|[^|]*\|\s*([0-9.]+)", proc.stdout)
            if proc.returncode != 0 or not match:
                problems.append(f"lm-eval {phase} run failed: {(proc.stderr or proc.stdout)[-600:]}")
            correct = str(round(float(match[1]) * len(questions))) if match else "None"
            rows.append(["lm-eval", phase, f"{wall:.2f}", str(server.stats()["requests"]), correct])
    else:
        print("lm-eval: not installed (pip install 'lm-eval[api]'), skipped")
    if rows:
        ideal = args.samples * args.latency / args.concurrency
        print(f"peers: the same {args.samples} questions and server, concurrency {args.concurrency} "
              f"(ideal cold {ideal:.2f} s; lpo-ci's cold and warm walls are in the table above):")
        print_table(["tool", "run", "wall s", "requests", "correct"], rows)


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


def variants_to_measure(args, parser) -> list[Variant]:
    """This checkout in each mode (completion: at each --batch-size), and the baseline in each of
    --baseline-modes (default: every mode)."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("chat", "completion") for m in modes):
        parser.error("--modes: a comma-separated list of chat and completion")
    try:
        sizes = sorted({int(b) for b in args.batch_size.split(",") if b.strip()} or {1})
    except ValueError:
        sizes = [0]
    if sizes[0] < 1:
        parser.error("--batch-size: positive integers, comma-separated")
    variants = []
    for mode in modes:
        for size in (sizes if mode == "completion" else [1]):
            variants.append(Variant(f"this {mode}" + (f" batch {size}" if size > 1 else ""), None, mode, size))
        if args.baseline_code and mode in [m.strip() for m in (args.baseline_modes or args.modes).split(",")]:
            baseline = Path(args.baseline_code).resolve()
            if not (baseline / "lpo_ci" / "__init__.py").is_file():
                parser.error(f"--baseline-code: no lpo_ci package in {baseline}")
            variants.append(Variant(f"baseline {mode}", baseline, mode))
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="dataset size (default 1000)")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, s")
    parser.add_argument("--concurrency", type=int, default=32, help="the gated concurrency (default 32)")
    parser.add_argument("--context", default="8,64", help="other concurrency levels, comma-separated")
    parser.add_argument("--target", type=float, default=1.25, help="max (wall - startup) / ideal")
    parser.add_argument("--cold-target", type=float, default=2.0, help="max cold wall (start-up included) / ideal")
    parser.add_argument("--repeat", type=int, default=1, help="cold+warm runs per level; medians shown")
    parser.add_argument("--modes", default="chat", help="chat, completion or both (comma-separated)")
    parser.add_argument("--baseline-modes", help="the modes of --modes to measure the baseline in "
                                                 "(default: all of them)")
    parser.add_argument("--batch-size", default="1",
                        help="completion mode, this checkout: prompts per request (comma-separated to "
                             "measure several, e.g. 1,16)")
    parser.add_argument("--server", choices=["process", "thread"], default="process",
                        help="run the fake server in a child process (default) or a thread of this one")
    parser.add_argument("--no-probe", action="store_true", help="skip the server capacity probe")
    parser.add_argument("--baseline-code", metavar="DIR",
                        help="another checkout (e.g. the branch point) to measure side by side")
    parser.add_argument("--cpu-target", type=float, default=0.5,
                        help="max CPU per call, this checkout over the baseline (with --baseline-code)")
    parser.add_argument("--peers", action="store_true", help="also run promptfoo and lm-eval if installed")
    parser.add_argument("--promptfoo", default=None, help="promptfoo command (default: promptfoo on PATH)")
    parser.add_argument("--lm-eval", default=None, help="lm-eval command (default: lm-eval on PATH)")
    parser.add_argument("--strict", action="store_true", help="exit 2 if a target is missed")
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
    variants = variants_to_measure(args, parser)
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

    def interleaved(repeat: int):
        """(round, variant) in ABBA order: drift in the machine's load cancels out."""
        for round_ in range(repeat):
            yield from ((round_, v) for v in (variants if round_ % 2 == 0 else variants[::-1]))

    def is_this(variant: Variant) -> bool:
        return variant.code is None

    def baseline_of(variant: Variant) -> Variant | None:
        """The baseline run the same way (same mode), to compare ``variant`` with."""
        return next((v for v in variants if not is_this(v) and v.mode == variant.mode), None)

    print(f"lpo-ci concurrency benchmark: {args.samples} examples, {args.latency * 1000:.0f} ms "
          f"per request, server in a {args.server}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, {machine_load()}")
    server = ProcessServer(args.latency) if args.server == "process" else ThreadServer(args.latency)
    instant = ProcessServer(0.0)
    problems: list[str] = []
    missed: list[str] = []

    def check(run: Run, what: str, prompts: int, batched: int = 0) -> None:
        if run.returncode != 0:
            problems.append(f"{what} exited {run.returncode}: {run.stderr.strip()[-800:]}")
        elif run.accuracy != 1.0:
            problems.append(f"{what}: accuracy {run.accuracy}, expected 1.0")
        if run.prompts != prompts:
            problems.append(f"{what} sent {run.prompts} prompts to the server, expected {prompts}")
        elif batched and prompts > batched and run.requests >= prompts:
            problems.append(f"{what} sent its {prompts} prompts one a request: nothing was batched")

    def one_example(variant: Variant, on=None, latency: float | None = None) -> Run:
        """The fixed cost: interpreter start, imports (litellm included), data, 1 request, report."""
        run = run_cli(on or server, project, samples=1, concurrency=args.concurrency, cache_dir=new_cache(),
                      latency=args.latency if latency is None else latency, report=report, variant=variant)
        check(run, f"{variant.label}: 1-example run", 1)
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

        for variant in variants:
            one_example(variant)  # warm the OS file cache and __pycache__; not timed
        this = Variant("this checkout")
        first = one_example(this)
        warm_cache = workdir / f"cache-{next(fresh) - 1}"
        warm_one = run_cli(server, project, samples=1, concurrency=args.concurrency, cache_dir=warm_cache,
                           latency=args.latency, report=report)
        check(warm_one, "1-example warm rerun", 0)
        print(f"start-up: lpo-ci --version {version_time():.2f} s; import litellm alone "
              f"{import_litellm_time():.2f} s; 1-example cold run {first.wall:.2f} s "
              f"({first.client_cpu:.2f} s CPU); 1-example warm rerun (no litellm import) "
              f"{warm_one.wall:.2f} s")
        print()

        # Client CPU per call, against a server that answers at once.
        per_call: dict[Variant, list[float]] = {v: [] for v in variants}
        for _, variant in interleaved(max(args.repeat, 2 if len(variants) > 1 else 1)):
            one = one_example(variant, on=instant, latency=0.0)
            many = run_cli(instant, project, samples=args.samples, concurrency=args.concurrency,
                           cache_dir=new_cache(), latency=0.0, report=report, variant=variant)
            check(many, f"{variant.label}: 0 ms cold run", args.samples,
                  variant.batch_size if variant.batch_size > 1 else 0)
            per_call[variant].append((many.client_cpu - one.client_cpu) / (args.samples - 1))
        median = {v: statistics.median(values) for v, values in per_call.items()}
        today = next((v for v in variants if not is_this(v) and v.mode == "chat"), None)
        rows = []
        for v, values in per_call.items():
            same = baseline_of(v) if is_this(v) else None
            ratio = median[v] / median[same] if same else None
            verdict = "" if ratio is None else (" ok" if ratio <= args.cpu_target else " MISS")
            if verdict == " MISS":
                missed.append(f"CPU per call, {v.label} / {same.label}: {ratio:.2f} > {args.cpu_target:g}")
            rows.append([v.label, f"{median[v] * 1000:.2f}", f"{min(values) * 1000:.2f}", str(len(values)),
                         fmt(ratio) + verdict,
                         fmt(median[v] / median[today]) if today and is_this(v) else "-"])
        print(f"client CPU per call (user+sys of the lpo-ci process, {args.samples} examples less 1, "
              f"0 ms server, concurrency {args.concurrency}):")
        print_table(["variant", "median ms/call", "min ms/call", "runs",
                     f"/ baseline same mode <={args.cpu_target:g}", "/ baseline chat"], rows)
        print()

        rows = []
        for concurrency in levels:
            ideal = args.samples * args.latency / concurrency
            samples: dict[Variant, list[dict]] = {v: [] for v in variants}
            for _, variant in interleaved(args.repeat):
                # Start-up cost measured in the same run: 1-example cold runs right before and after.
                before = one_example(variant)
                cache_dir = new_cache()
                cold = run_cli(server, project, samples=args.samples, concurrency=concurrency,
                               cache_dir=cache_dir, latency=args.latency, report=report, variant=variant)
                warm = run_cli(server, project, samples=args.samples, concurrency=concurrency,
                               cache_dir=cache_dir, latency=args.latency, report=report, variant=variant)
                after = one_example(variant)
                check(cold, f"{variant.label} c={concurrency} cold run", args.samples,
                      variant.batch_size if variant.batch_size > 1 else 0)
                check(warm, f"{variant.label} c={concurrency} warm rerun", 0)
                startup = (before.wall + after.wall) / 2 - args.latency
                startup_cpu = (before.client_cpu + after.client_cpu) / 2
                net = cold.wall - startup
                calls = cold.usage.get("calls")
                samples[variant].append({
                    "wall": cold.wall, "cold_ratio": cold.wall / ideal, "startup": startup, "net": net,
                    "ratio": net / ideal,
                    "phase": cold.phase, "phase_ratio": cold.phase / ideal if cold.phase else None,
                    "peak": cold.peak_in_flight,
                    "mean_call": (cold.usage.get("latency", 0) / calls) if calls else None,
                    "cpu": cold.client_cpu - startup_cpu,
                    "cpu_share": (cold.client_cpu - startup_cpu) / net if net > 0 else None,
                    "server_cpu": cold.server_cpu, "requests": cold.requests,
                    "warm_wall": warm.wall, "warm_requests": warm.requests,
                    "warm_hits": warm.usage.get("cache_hits"),
                })
            for variant, runs in samples.items():
                def med(key, runs=runs):
                    values = [s[key] for s in runs if s[key] is not None]
                    return statistics.median(values) if values else None

                ratio, cold_ratio = med("ratio"), med("cold_ratio")
                gated = concurrency == args.concurrency and is_this(variant)
                if gated and ratio > args.target:
                    missed.append(f"{variant.label}, concurrency {concurrency}: ratio {ratio:.2f} > "
                                  f"target {args.target:g}")
                if gated and cold_ratio > args.cold_target:
                    missed.append(f"{variant.label}, concurrency {concurrency}: cold wall / ideal "
                                  f"{cold_ratio:.2f} > {args.cold_target:g}")
                rows.append([
                    variant.label, str(concurrency), f"{ideal:.3f}", f"{med('wall'):.2f}",
                    f"{cold_ratio:.2f}" + ((" ok" if cold_ratio <= args.cold_target else " MISS") if gated else ""),
                    f"{med('startup'):.2f}", f"{med('net'):.2f}",
                    f"{ratio:.2f}" + ((" ok" if ratio <= args.target else " MISS") if gated else ""),
                    fmt(med("phase")), fmt(med("phase_ratio")), str(max(s["peak"] for s in runs)),
                    fmt(med("mean_call"), ".3f"), f"{med('cpu'):.2f}", fmt(med("cpu_share"), ".0%"),
                    f"{med('server_cpu'):.2f}", str(max(s["requests"] for s in runs)),
                    f"{med('warm_wall'):.2f}", str(max(s["warm_requests"] for s in runs)),
                    str(min((s["warm_hits"] or 0) for s in runs)),
                ])
        print_table(["variant", "conc", "ideal s", "wall s", f"wall/ideal<={args.cold_target:g}", "startup s",
                     "net s", f"ratio<={args.target:g}", "srv phase s", "phase ratio", "peak prompts",
                     "mean call s", "client cpu s", "cpu/net", "server cpu s", "requests", "warm wall s",
                     "warm reqs", "warm hits"], rows)
        print()
        print("wall/ideal = the cold command's whole wall time, start-up included, over ideal = samples * "
              "latency / concurrency; ratio = (wall - startup) / ideal, startup = "
              "mean of 1-example cold runs just before and after, less one latency; srv phase = "
              "first request arrival to last answer as the server saw it (phase ratio = srv phase / "
              "ideal, independent of the start-up estimate); peak prompts = most prompts the server "
              "held at once (a batched request holds several); mean call = client-observed seconds per "
              f"prompt (server latency {args.latency:g} s a request); client cpu = user+sys CPU of the "
              "lpo-ci process beyond the 1-example runs'; cpu/net = client cpu / net (near 100%: "
              f"the client's CPU sets the pace)" + (f"; medians of {args.repeat} runs" if args.repeat > 1
                                                     else ""))
        if args.peers:
            print()
            run_peers(args, server, project, workdir, problems)
        print(f"finished with {machine_load()}")
    finally:
        server.close()
        instant.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        return 1
    for miss in missed:
        print(f"target missed: {miss}", file=sys.stderr)
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
