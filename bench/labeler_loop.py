"""Benchmark: import, the labeler loop and export, side by side: rlhf-studio on PostgreSQL,
rlhf-studio on its embedded default (SQLite, filesystem broker) and Label Studio.

    .venv/bin/python bench/labeler_loop.py                       # about 15 minutes
    .venv/bin/python bench/labeler_loop.py --quick               # about 5 minutes
    .venv/bin/python bench/labeler_loop.py --systems labelstudio # or postgres, sqlite, a list

Every system runs in turn, alone on the machine, through the same steps:

1. setup, not timed: a fresh database, one project of K=4 completions and N=3 labelers per
   prompt, one user with an API token per simulated labeler, the server on 127.0.0.1
   (bench/rlhf_studio.py: gunicorn in production mode; bench/labelstudio.py: `label-studio
   start`, installed into its own virtualenv the first time, outbound calls off);
2. import, timed: the same --prompts prompts over HTTP (ours: the JSONL file uploaded to
   `POST /api/projects/{id}/imports/`; Label Studio: the same prompts as a JSON list of tasks
   to `POST /api/projects/{id}/import`);
3. labeler loop (bench/loadgen.py, the same for every system): each labeler its own user,
   thread and keep-alive connection, fetching the next prompt and submitting a random ranking
   of it. Closed loop at each of --concurrency (1, 8, 32) for --duration s, no think time;
   then an open loop of --open-labelers (200) each starting at exponential gaps of mean
   --open-interval (10 s), for --open-duration s. Every run gets labelers no other run used.
   After every run the labeling invariants are checked in SQL;
4. top-up, not timed: rankings stored in bulk with each system's own models, the rows its
   API writes, until --export-rankings exist (at 1 ranking/s, Label Studio would take hours
   over HTTP); the invariants are checked again after;
5. export, timed, with peak resident memory sampled every 10 ms on the process that builds
   it (ours: a worker's process running the export service, TRL JSONL + rankings JSONL;
   Label Studio: its server, for its JSON export snapshot and for its one-request export).

Prints one table and the notes under it; ratios are between systems of this invocation.
Exits 1 if an rlhf-studio invariant is violated (Label Studio's are reported, not fatal).
"""

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import labelstudio
import loadgen
import rlhf_studio

SCRATCH = rlhf_studio.SCRATCH
WARMUP = 4  # labelers of the short warm-up run before the measured ones


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prompts_file(prompts: int) -> Path:
    from import_prompts import write_file  # the same generated file as the import benchmark

    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"prompts-{prompts}-k{rlhf_studio.K}.jsonl"
    if not path.exists():
        write_file(path, prompts, rlhf_studio.K)
    return path


def make_system(name: str, configs: list[tuple[int, int]]):
    if name == "labelstudio":
        return labelstudio.LabelStudio()
    workers, threads = configs[0]
    return rlhf_studio.RlhfStudio(name, workers, threads)


class Run:
    """One system through the five steps; what it measured, and what its checks found."""

    def __init__(self, system, args):
        self.system, self.args = system, args
        self.levels = [int(c) for c in args.concurrency.split(",")]
        self.loops: list[tuple[str, dict]] = []
        self.violations: list[str] = []
        self.trials: list[tuple[float, str, tuple[int, int]]] = []

    def users(self, configs: list) -> int:
        trials = len(configs) * (max(self.levels) + WARMUP) if self._tries(configs) else 0
        return trials + WARMUP + sum(self.levels) + self.args.open_labelers

    def _tries(self, configs: list) -> bool:
        return len(configs) > 1 and isinstance(self.system, rlhf_studio.RlhfStudio)

    def __call__(self, jsonl: Path, configs: list) -> None:
        system, args = self.system, self.args
        began = time.perf_counter()
        system.prepare(self.users(configs))
        self.pool = iter(system.tokens)
        self.setup_s = time.perf_counter() - began
        log(f"{system.name}: setup {self.setup_s:.0f} s; importing ...")
        self.imported = system.import_prompts(jsonl)
        log(f"  import: {self.imported['prompts']:,} prompts in {self.imported['seconds']:.1f} s")
        if self._tries(configs):
            self._choose_server(configs)
        self._closed(WARMUP, 1.5)
        self._after("warm-up")
        for level in self.levels:
            self.loops.append(("closed", self._closed(level, args.duration)))
            self._after(f"closed {level}")
        result = loadgen.open_loop(system.port, system.protocol, self._take(args.open_labelers),
                                   args.open_duration, args.open_interval, system.groups())
        self.loops.append(("open", result))
        self._after("open")
        self.server_name = system.server_name
        system.stop()
        log(f"  top-up to {args.export_rankings:,} rankings ...")
        self.rankings_at_export = system.top_up(args.export_rankings)
        self._after("top-up")
        log("  export ...")
        self.export = system.export()
        system.stop()
        self.total_s = time.perf_counter() - began

    def _take(self, count: int) -> list[str]:
        return [next(self.pool) for _ in range(count)]

    def _closed(self, level: int, seconds: float) -> dict:
        system = self.system
        return loadgen.closed_loop(system.port, system.protocol, self._take(level), seconds,
                                   system.groups())

    def _after(self, label: str) -> None:
        found = self.system.check()
        prompts, ranked = self.system.progress()
        log(f"  {label}: invariants {'ok' if not found else 'VIOLATED'}; "
            f"{ranked:,} of {prompts * rlhf_studio.N:,} rankings stored")
        self.violations.extend(f"{label}: {v}" for v in found)

    def _choose_server(self, configs: list) -> None:
        """A short closed loop per gunicorn configuration; keep the one with most rankings/s."""
        for workers, threads in configs:
            self.system.restart(workers, threads)
            self._closed(WARMUP, 1.5)
            result = self._closed(max(self.levels), self.args.trial_duration)
            self.trials.append((result["rate"], self.system.server.name, (workers, threads)))
            log(f"  trial {self.system.server.name}: {result['rate']:.0f} rankings/s")
            self._after(f"trial {workers}x{threads}")
        best = max(self.trials)
        self.system.restart(*best[2])


# --- the table ----------------------------------------------------------------------------------


FEW = 30  # latencies from fewer requests than this: shown with their count, no ratio


def fmt(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values)


def latency_cell(result: dict, key: str) -> str:
    count = result[f"{key}_n"]
    return fmt(result[key]) + (f" (n={count})" if count < FEW else "")


def p95_ratio(ours: dict, theirs: dict, key: str) -> float | None:
    if min(ours[f"{key}_n"], theirs[f"{key}_n"]) < FEW:
        return None
    return theirs[key][1] / ours[key][1]


def export_of(run: Run) -> dict:
    """The export to compare: ours, or Label Studio's faster one (the harder comparison)."""
    if "snapshot" in run.export:
        return min(run.export.values(), key=lambda export: export["seconds"])
    return run.export


def export_cell(run: Run, form) -> str:
    if "snapshot" in run.export:  # Label Studio: snapshot API / one-request GET
        return " / ".join(form(run.export[kind]) for kind in ("snapshot", "sync"))
    return form(run.export)


def rows_of(runs: list[Run], args) -> list[tuple]:
    """(measurement, a cell per system, ratio(ours, theirs) or None) for every row.

    A ratio above 1 says ours is better: rankings/s ours / theirs; seconds theirs / ours.
    """
    rows = [(f"import {runs[0].imported['prompts']:,} prompts, s",
             [f"{r.imported['seconds']:.1f}" for r in runs],
             lambda o, t: t.imported["seconds"] / o.imported["seconds"])]
    for i, (scenario, first) in enumerate(runs[0].loops):
        if scenario == "closed":
            label = f"closed {first['concurrency']}"
            rates = [f"{r.loops[i][1]['rate']:.1f}" for r in runs]
        else:
            label = f"open {args.open_labelers} every {args.open_interval:g} s"
            rates = [f"{r.loops[i][1]['rate']:.1f} of {r.loops[i][1]['offered']:.1f}"
                     for r in runs]
        rows += [
            (f"{label}: rankings/s" + ("" if scenario == "closed" else " (of offered)"), rates,
             lambda o, t, i=i: o.loops[i][1]["rate"] / t.loops[i][1]["rate"]),
            (f"{label}: next p50/p95/p99 ms", [latency_cell(r.loops[i][1], "next") for r in runs],
             lambda o, t, i=i: p95_ratio(o.loops[i][1], t.loops[i][1], "next")),
            (f"{label}: submit p50/p95/p99 ms",
             [latency_cell(r.loops[i][1], "submit") for r in runs],
             lambda o, t, i=i: p95_ratio(o.loops[i][1], t.loops[i][1], "submit")),
            (f"{label}: errors", [str(r.loops[i][1]["errors"]) for r in runs], None),
        ]
    rows += [
        (f"export ~{runs[0].rankings_at_export:,} rankings, s",
         [export_cell(r, lambda e: f"{e['seconds']:.2f}") for r in runs],
         lambda o, t: export_of(t)["seconds"] / export_of(o)["seconds"]),
        ("export: peak RSS MB (+ growth)",
         [export_cell(r, lambda e: f"{e['peak_rss_mb']:.0f} (+{e['rss_growth_mb']:.0f})")
          for r in runs], None),
        ("export: MB written", [export_cell(r, lambda e: f"{e['bytes'] / 1e6:.1f}")
                                for r in runs], None),
    ]
    return rows


def ratio_cell(ratio, ours: Run, theirs: Run) -> str:
    if ratio is None:
        return ""
    try:
        value = ratio(ours, theirs)
    except ZeroDivisionError:  # theirs did none of it
        return ">100x"
    if value is None:
        return "n/a"
    return ">100x" if value > 100 else f"{value:.1f}x"


def print_table(runs: list[Run], args) -> None:
    theirs = next((r for r in runs if isinstance(r.system, labelstudio.LabelStudio)), None)
    ours = [r for r in runs if r is not theirs] if theirs is not None else []
    header = ["measurement", *[r.system.name for r in runs],
              *[f"{r.system.name.split(', ')[1]} vs Label Studio" for r in ours]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, cells, ratio in rows_of(runs, args):
        extra = [ratio_cell(ratio, run, theirs) for run in ours]
        lines.append("| " + " | ".join([label, *cells, *extra]) + " |")
    print("\n".join(lines))


def print_notes(runs: list[Run], args, load: tuple) -> None:
    print()
    for run in runs:
        print(f"{run.system.name}: {run.server_name}; setup {run.setup_s:.0f} s, "
              f"all steps {run.total_s:.0f} s")
        if run.trials:
            print("  gunicorn trials, closed loop at {} for {:.0f} s: {}".format(
                max(run.levels), args.trial_duration,
                "; ".join(f"{name} {rate:.0f}/s" for rate, name, _ in run.trials)))
        cpu = "; ".join(
            f"{scenario} {result['concurrency']}: " + " / ".join(
                f"{result['cpu'].get(k, 0):.2f}" for k in ("client", "server", "database",
                                                           "other"))
            for scenario, result in run.loops)
        print(f"  cores busy, client / server / PostgreSQL / other: {cpu}")
        for scenario, result in run.loops:
            if scenario == "open":
                print(f"  open loop: p99 lateness of a scheduled start "
                      f"{result['lag_p99']:.0f} ms")
            if result["done_labelers"]:
                print(f"  {scenario} {result['concurrency']}: {result['done_labelers']} "
                      "labelers found nothing left")
            if result["errors"]:
                kinds = ", ".join(f"{kind} x{count}" for kind, count
                                  in sorted(result["error_kinds"].items(), key=lambda kv: -kv[1]))
                print(f"  errors ({scenario} {result['concurrency']}): {kinds}")
            for sample in result["error_samples"]:
                print(f"    e.g. {sample}")
        if "snapshot" in run.export:
            print("  export: snapshot API (POST exports/ + download) / one-request GET export; "
                  f"{run.export['snapshot']['tasks']:,} tasks, "
                  f"{run.export['snapshot']['rankings']:,} annotations in the file")
        else:
            print(f"  export: {run.export['rankings']:,} rankings, {run.export['pairs']:,} "
                  f"pairs, status {run.export['status']}")
        checks = "ok after every run" if not run.violations else "VIOLATED"
        print(f"  invariants: {checks}")
        for violation in run.violations:
            print(f"    {violation}")
    if any(isinstance(r.system, labelstudio.LabelStudio) for r in runs):
        blocked = labelstudio.blocked_calls()
        print(f"Label Studio {labelstudio.version()}: off-loopback lookups or connections "
              f"refused: {len(blocked)}" + (f", e.g. {blocked[:3]}" if blocked else ""))
        print("Ratios (above 1: ours better): rankings/s ours / theirs; seconds and p95 "
              "theirs / ours; the export against Label Studio's faster one.")
    print(f"Machine: {os.cpu_count()} cores; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="postgres,sqlite,labelstudio")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 prompts, 5 s closed runs, 15 s open loop, export at 2,000")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=20, help="seconds per closed run")
    parser.add_argument("--open-duration", type=float, default=60, help="seconds of open loop")
    parser.add_argument("--concurrency", default="1,8,32", help="closed-loop labelers per run")
    parser.add_argument("--open-labelers", type=int, default=200)
    parser.add_argument("--open-interval", type=float, default=10.0,
                        help="mean seconds between one open-loop labeler's starts")
    parser.add_argument("--export-rankings", type=int, default=10_000,
                        help="rankings stored before the export (topped up, not timed)")
    parser.add_argument("--configs", default="2x4",
                        help="gunicorn WORKERSxTHREADS; more than one: a trial picks the best")
    parser.add_argument("--trial-duration", type=float, default=8)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.duration, args.open_duration = 2_000, 5, 15
        args.export_rankings = 2_000
    configs = [tuple(int(v) for v in item.lower().split("x")) for item in args.configs.split(",")]
    load = os.getloadavg()
    began = time.perf_counter()
    jsonl = prompts_file(args.prompts)
    runs, failed = [], []
    for name in args.systems.split(","):
        run = Run(make_system(name, configs), args)
        try:
            run(jsonl, configs)
            runs.append(run)
        except Exception:
            failed.append((run.system.name, traceback.format_exc()[-2000:]))
            log(f"{run.system.name} FAILED:\n{failed[-1][1]}")
        finally:
            run.system.stop()
    print(f"Import, labeler loop and export: {args.prompts:,} prompts x {rlhf_studio.K} "
          f"completions, N={rlhf_studio.N}; closed runs {args.duration:g} s, open loop "
          f"{args.open_duration:g} s")
    if runs:
        print_table(runs, args)
        print_notes(runs, args, load)
    for name, error in failed:
        print(f"{name}: FAILED\n{error}")
    print(f"total {time.perf_counter() - began:.0f} s")
    ours_violated = any(r.violations for r in runs if not isinstance(r.system,
                                                                     labelstudio.LabelStudio))
    if ours_violated or failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
