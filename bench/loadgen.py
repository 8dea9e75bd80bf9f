"""The labelers' load generator, shared by every system the labeler-loop benchmark drives.

A system is described by a Protocol: where a labeler asks for the next item, how it reads the
answer, and how it submits a ranking of it. Everything else is the same for all systems: one
thread and one keep-alive HTTP connection per labeler, each its own user; a closed loop (no
think time) or an open loop (starts drawn from the clock, so a slow server does not lower the
offered load); latency percentiles; and CPU and memory read from /proc. Standard library only,
so the Label Studio side can import it from its own virtualenv.
"""

import http.client
import json
import os
import random
import resource
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


class ProtocolError(Exception):
    """The server answered something a labeler cannot go on from."""


class Protocol:
    """How one system's labeler loop looks over HTTP; subclasses fill in the three steps."""

    submit_status = 201

    def next_path(self) -> str:
        raise NotImplementedError

    def read_next(self, status: int, data: bytes) -> object | None:
        """Return the item to rank, None when nothing is left; raise ProtocolError otherwise."""
        raise NotImplementedError

    def submit(self, item: object) -> tuple[str, bytes]:
        """Return the path and JSON body that submit a random ranking of `item`."""
        raise NotImplementedError

    def carried_next(self, data: bytes) -> object:
        """The next item a submit's answer carries (None: nothing left), so the labeler
        skips the next fetch; NOT_CARRIED where this system's answer carries none."""
        return NOT_CARRIED


NOT_CARRIED = object()


def random_order(ids: list) -> list:
    return random.sample(ids, len(ids))


# --- one HTTP request ---------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, timeout: float = 600) -> tuple[int, bytes]:
    """One request on a fresh connection; return the status and the whole body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_up(port: int, path: str, alive: Callable[[], bool], what: str,
                  timeout: float = 180) -> None:
    """Poll GET `path` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited before answering {path}")
        try:
            if request(port, "GET", path, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} did not answer {path} with 200 within {timeout:.0f} s")


# --- /proc: CPU and memory ----------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        fields = proc_stat(pid)
        if fields:
            found[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return found


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def host_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def rss_mb(pid: int) -> float:
    """Resident memory of one process now (VmRSS), in MB; 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class CpuMeter:
    """Average cores busy, from start to stop, in this client, in each group of processes and
    on the whole host. A process that started during the run counts from zero; one that ended
    during it is missed (PostgreSQL backends persist: CONN_MAX_AGE=60)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.start = self._sample()

    def _sample(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"wall": time.perf_counter(), "client": usage.ru_utime + usage.ru_stime,
                "host": host_busy_seconds(),
                "groups": {name: cpu_by_pid(pids()) for name, pids in self.groups.items()}}

    def stop(self) -> dict:
        end = self._sample()
        wall = end["wall"] - self.start["wall"]
        used = {"client": end["client"] - self.start["client"],
                "host": end["host"] - self.start["host"]}
        for name, cpu in end["groups"].items():
            before = self.start["groups"][name]
            used[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in cpu.items())
        cores = {name: seconds / wall for name, seconds in used.items()}
        cores["other"] = cores["host"] - sum(v for k, v in cores.items() if k != "host")
        return cores


class RssSampler:
    """Peak resident memory of one process while a block runs, sampled every 10 ms.

    The same sampler reads every system's exporting process, so the figures compare.
    """

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid, self.interval = pid, interval
        self.before = self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.before


# --- the simulated labelers ---------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.lag_ms: list[float] = []
        self.rankings = 0
        self.done_labelers = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def error(self, kind: str, detail: str) -> None:
        """Count one failed request by `kind` ("next TimeoutError", "submit 500"); keep the
        first few in full."""
        with self.lock:
            self.errors += 1
            self.error_kinds[kind] += 1
            if len(self.error_samples) < 3:
                self.error_samples.append(f"{kind}: {detail}"[:300])


class Labeler:
    """One user with one keep-alive connection; reconnects when the server closed it."""

    def __init__(self, port: int, protocol: Protocol, token: str, stats: Stats,
                 keepalive: float = 1.5):
        self.protocol, self.stats, self.keepalive = protocol, stats, keepalive
        self.headers = {"Authorization": f"Token {token}", "Host": HOST,
                        "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.last_used = 0.0
        self.carried = NOT_CARRIED  # the next item from the last submit's answer

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, float]:
        # An idle connection past the server's keep-alive (gunicorn: 2 s) is closed: open anew.
        if time.monotonic() - self.last_used > self.keepalive:
            self.conn.close()
        for attempt in (1, 2):
            reused = self.conn.sock is not None
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                # The server closed a kept-alive connection before reading this request.
                if reused and attempt == 1:
                    continue
                raise
            elapsed = (time.perf_counter() - started) * 1000
            self.last_used = time.monotonic()
            return response.status, data, elapsed
        raise AssertionError("unreachable")

    def iteration(self) -> bool:
        """Fetch the next item (unless the last submit's answer carried it), then submit a
        ranking of it; False once nothing is left."""
        stats, protocol = self.stats, self.protocol
        next_ms = None  # no fetch: the item came with the last submit's answer
        if self.carried is not NOT_CARRIED:
            item, self.carried = self.carried, NOT_CARRIED
        else:
            try:
                status, data, next_ms = self._request("GET", protocol.next_path(), None)
                item = protocol.read_next(status, data)
            except ProtocolError as exc:
                stats.error(f"next {str(exc).split(':')[0]}", str(exc))
                return True
            except (OSError, ValueError) as exc:
                stats.error(f"next {type(exc).__name__}", repr(exc))
                return True
        if item is None:
            with stats.lock:
                if next_ms is not None:
                    stats.next_ms.append(next_ms)
                stats.done_labelers += 1
            return False
        path, body = protocol.submit(item)
        try:
            status, data, submit_ms = self._request("POST", path, body)
        except OSError as exc:
            stats.error(f"submit {type(exc).__name__}", repr(exc))
            return True
        with stats.lock:
            if next_ms is not None:
                stats.next_ms.append(next_ms)
            if status == protocol.submit_status:
                stats.submit_ms.append(submit_ms)
                stats.rankings += 1
        if status != protocol.submit_status:
            stats.error(f"submit {status}", repr(data[:200]))
            return True
        try:
            self.carried = protocol.carried_next(data)
        except (ProtocolError, ValueError, KeyError) as exc:
            stats.error(f"submit's next {type(exc).__name__}", repr(exc))
        return True

    def close(self) -> None:
        self.conn.close()


def closed_loop(port: int, protocol: Protocol, tokens: list[str], seconds: float,
                groups: dict[str, Callable[[], list[int]]]) -> dict:
    """Every labeler fetches and submits back to back until the deadline."""
    stats = Stats()
    labelers = [Labeler(port, protocol, token, stats) for token in tokens]
    start_gate = threading.Barrier(len(labelers) + 1)
    deadline = [0.0]

    def run(labeler: Labeler) -> None:
        start_gate.wait()
        while time.perf_counter() < deadline[0] and labeler.iteration():
            pass
        labeler.close()

    threads = [threading.Thread(target=run, args=(labeler,), daemon=True) for labeler in labelers]
    for thread in threads:
        thread.start()
    meter = CpuMeter(groups)
    started = time.perf_counter()
    deadline[0] = started + seconds
    start_gate.wait()
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.perf_counter() - started
    return summarize(stats, wall, meter.stop(), concurrency=str(len(tokens)))


def open_loop(port: int, protocol: Protocol, tokens: list[str], seconds: float,
              interval: float, groups: dict[str, Callable[[], list[int]]]) -> dict:
    """Each labeler starts a fetch + submit at exponential gaps of mean `interval`, drawn
    from its schedule, not from the responses. No new start after `seconds`: a server that
    falls behind leaves starts undone (reported as offered minus achieved), and the run stays
    bounded in time."""
    stats = Stats()
    labelers = [Labeler(port, protocol, token, stats) for token in tokens]
    scheduled = [0]
    started = time.perf_counter()
    end = started + seconds

    def run(labeler: Labeler, rng: random.Random) -> None:
        due = started + rng.expovariate(1 / interval)
        running = True
        while due < end:  # every start of the schedule is offered, run or not
            with stats.lock:
                scheduled[0] += 1
            if running:
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if time.perf_counter() >= end:
                    running = False  # behind schedule past the window: offered, not run
                else:
                    with stats.lock:
                        stats.lag_ms.append((time.perf_counter() - due) * 1000)
                    running = labeler.iteration()
            due += rng.expovariate(1 / interval)
        labeler.close()

    meter = CpuMeter(groups)
    threads = [threading.Thread(target=run, args=(labeler, random.Random(i)), daemon=True)
               for i, labeler in enumerate(labelers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.perf_counter() - started
    result = summarize(stats, wall, meter.stop(), concurrency=f"{len(tokens)} (open)")
    result["offered"] = scheduled[0] / seconds
    result["lag_p99"] = percentile(stats.lag_ms, 99)
    return result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def summarize(stats: Stats, wall: float, cpu: dict, concurrency: str) -> dict:
    return {
        "concurrency": concurrency, "rate": stats.rankings / wall, "rankings": stats.rankings,
        "next": [percentile(stats.next_ms, p) for p in (50, 95, 99)],
        "submit": [percentile(stats.submit_ms, p) for p in (50, 95, 99)],
        "next_n": len(stats.next_ms), "submit_n": len(stats.submit_ms),
        "errors": stats.errors, "error_kinds": dict(stats.error_kinds),
        "error_samples": stats.error_samples,
        "done_labelers": stats.done_labelers, "cpu": cpu, "wall": wall,
    }


def jsonl_records(path: Path):
    """The benchmark's prompts file, one record a line (see bench/import_prompts.py)."""
    with path.open() as lines:
        for line in lines:
            yield json.loads(line)


def violations(checks: dict[str, str], query: Callable[[str], list[tuple]]) -> list[str]:
    """Run each named SQL check with `query`; describe those that returned rows."""
    found = []
    for name, sql in checks.items():
        rows = query(sql)
        if rows:
            found.append(f"{name}: {len(rows)} rows, e.g. {rows[:3]}")
    return found
