"""Benchmark: the export of N labeler rankings, rlhf-studio (PostgreSQL and SQLite, this
checkout and older commits in git worktrees) against Label Studio's JSON exports, side by side
in one invocation (issue 19).

    git worktree add --detach /tmp/bench-OLD OLD
    .venv/bin/python bench/export_side_by_side.py run --trees /tmp/bench-OLD,. --repeat 3 \
        --out bench/results/x.jsonl                     # about 10 minutes
    .venv/bin/python bench/export_side_by_side.py run --trees . --workers 1,2 --repeat 3 \
        --out bench/results/y.jsonl                     # one process against two, and LS
    .venv/bin/python bench/export_side_by_side.py memory --rankings 10000,100000 --trees .
    .venv/bin/python bench/export_side_by_side.py profile --database sqlite --out DIR
    .venv/bin/python bench/export_side_by_side.py table bench/results/x.jsonl

Setup, not timed, once per database: a fresh database (PostgreSQL: `rlhf_bench_export` on
POSTGRES_URL; SQLite under bench/.scratch/export-sqlite), migrated by this checkout, one
project of K=4 completions and N=3 labelers per prompt (bench/rlhf_studio.py's setup), the
benchmark's prompts imported by the import service, then topped up to N rankings in bulk
(bench/rlhf_studio.py's top-up; ANALYZE on PostgreSQL). Label Studio: bench/labelstudio.py's
setup, import and top-up, as bench/labeler_loop.py runs them.

Each repetition exports with every system in turn (the order of the trees flips every
repetition): each tree's own `bench/rlhf_studio.py --child export` (the export service a
worker runs, TRL JSONL + rankings JSONL + consensus + card + zip, in a fresh process whose
resident memory is sampled every 10 ms) on the same database, and Label Studio's two JSON
exports (snapshot API, one-request GET), each on a freshly started server. Every export of
ours is checked against the first tree's on the same database: the content hash and the
bytes of every file but the zip (whose entries carry the files' times) must be equal.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import rlhf_studio  # noqa: E402

ROOT = rlhf_studio.ROOT
SCRATCH = rlhf_studio.SCRATCH
POSTGRES_URL = rlhf_studio.POSTGRES_URL
DB_NAME = "rlhf_bench_export"
USERS = 8  # labelers: three per prompt, rotated

# Drop this checkout's editable finder in a tree's processes, as bench/before_after.py does.
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--",
                            "annotate", "bench/rlhf_studio.py"], capture_output=True, text=True)
    return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


class Dataset:
    """One database of ours holding `rankings` labeler rankings, and its VAR_DIR."""

    def __init__(self, database: str, rankings: int):
        self.database, self.rankings = database, rankings
        self.var_dir = SCRATCH / f"export-{database}-{rankings}"
        self.db_name = f"{DB_NAME}_{rankings}"
        self.url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + self.db_name

    def env(self, tree: Path = ROOT) -> dict:
        site = SCRATCH / "export-site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": "WARNING",
               "VAR_DIR": str(self.var_dir), "PYTHONPATH": f"{tree}:{site}",
               "SECRET_KEY": "bench-export-" + "x" * 40}
        env.pop("CELERY_BROKER_URL", None)
        env.pop("DATABASE_URL", None)
        if self.database == "postgres":
            env["DATABASE_URL"] = self.url
        return env

    def build(self, prompts: int) -> None:
        subprocess.run(["rm", "-rf", str(self.var_dir)], check=True)
        self.var_dir.mkdir(parents=True)
        if self.database == "postgres":
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {self.db_name}")
        subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                       env=self.env(), check=True)
        self._child([sys.executable, str(ROOT / "bench" / "rlhf_studio.py"), "--child", "setup",
                     "--users", str(USERS)])
        jsonl = prompts_file(prompts)
        self._child([sys.executable, __file__, "child-import", str(jsonl)])
        self._child([sys.executable, str(ROOT / "bench" / "rlhf_studio.py"), "--child",
                     "top-up", "--total", str(self.rankings)])
        if self.database == "postgres":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("ANALYZE")

    def _child(self, argv: list[str]) -> None:
        done = subprocess.run(argv, cwd=ROOT, env=self.env(), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{argv[1:4]} failed:\n{done.stderr[-3000:]}")

    def export(self, tree: Path, workers: int | None = None) -> dict:
        """One export by `tree`'s code in a fresh process, its memory sampled; then the
        export's hash and files, read back and removed (the disk stays small). `workers`:
        its EXPORT_WORKERS (None: the default); the CPU seconds include its part processes
        (wait4 counts the children it waited for)."""
        env = self.env(tree)
        if workers is not None:
            env["EXPORT_WORKERS"] = str(workers)
        child = subprocess.Popen([sys.executable, str(tree / "bench" / "rlhf_studio.py"),
                                  "--child", "export"], cwd=tree, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if child.stdout.readline().strip() != "ready":
            child.wait()
            raise RuntimeError(f"{tree}: export child did not start")
        before = loadgen.cpu_by_pid([child.pid])[child.pid]  # Django started, waiting
        with loadgen.RssSampler(child.pid) as rss:
            child.stdin.write("go\n")
            child.stdin.flush()
            line = child.stdout.readline()
            _, status, usage = os.wait4(child.pid, 0)  # its CPU seconds, to the end
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode or not line:
            raise RuntimeError(f"{tree}: export failed (exit {child.returncode})")
        cpu = usage.ru_utime + usage.ru_stime - before
        latest = max((self.var_dir / "exports" / rlhf_studio.SLUG).glob("v*[0-9]"),
                     key=lambda path: int(path.name[1:]))
        files = file_digests(latest)
        subprocess.run(["rm", "-rf", str(latest), str(latest.with_suffix(".zip"))], check=True)
        manifest = json.loads(files["manifest.json"]["text"])
        return {**json.loads(line), "cpu_seconds": cpu, "peak_rss_mb": rss.peak,
                "rss_growth_mb": rss.growth, "files": files,
                "content_hash": manifest["content_hash"]}


def labelstudio_export(studio) -> dict:
    """bench/labelstudio.py's two exports, each on a freshly started server, with the CPU
    seconds its server process (and any children) spent from the first request to the last
    byte: on a shared machine, the cost that other load does not stretch."""
    results = {}
    for kind in ("snapshot", "sync"):
        studio.restart()
        pids = lambda: [studio.process.pid, *loadgen.children(studio.process.pid)]  # noqa: E731
        before = sum(loadgen.cpu_by_pid(pids()).values())
        with loadgen.RssSampler(studio.process.pid) as rss:
            started = time.perf_counter()
            if kind == "snapshot":
                status, body = studio.api("POST", f"/api/projects/{studio.project}/exports/", {
                    "title": "bench", "task_filter_options": {"annotated": "only"}})
                snapshot = json.loads(body)
                if status != 201 or snapshot.get("status") != "completed":
                    raise RuntimeError(f"Label Studio: export answered {status}: {body[:300]!r}")
                path = f"/api/projects/{studio.project}/exports/{snapshot['id']}/download"
            else:
                path = f"/api/projects/{studio.project}/export"
            status, data = studio.api("GET", path + "?exportType=JSON")
            seconds = time.perf_counter() - started
        cpu = sum(loadgen.cpu_by_pid(pids()).values()) - before
        results[kind] = {**studio._export_result(status, data, seconds, rss), "cpu_seconds": cpu}
    return results


def file_digests(directory: Path) -> dict:
    """sha256 and size of every file of an export (the zip: its size and member names only);
    the manifest's text too, for its content hash."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found[path.relative_to(directory).as_posix()] = {
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    found["manifest.json"]["text"] = (directory / "manifest.json").read_text()
    archive = directory.with_suffix(".zip")
    found["zip"] = {"bytes": archive.stat().st_size}
    return found


def prompts_file(prompts: int) -> Path:
    from import_prompts import write_file

    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"prompts-{prompts}-k{rlhf_studio.K}.jsonl"
    if not path.exists():
        write_file(path, prompts, rlhf_studio.K)
    return path


def same_output(first: dict, other: dict) -> list[str]:
    """Files whose bytes differ between two exports of one database (the zip aside)."""
    names = (set(first["files"]) | set(other["files"])) - {"zip"}
    return sorted(name for name in names
                  if first["files"].get(name, {}).get("sha256")
                  != other["files"].get(name, {}).get("sha256"))


def strip(result: dict) -> dict:
    """What goes to the results file: the files' digests without the manifest's text."""
    files = {name: {k: v for k, v in entry.items() if k != "text"}
             for name, entry in result.get("files", {}).items()}
    return {**result, "files": files}


def run(args) -> None:
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    commits = [commit_of(tree) for tree in trees]
    rankings = args.rankings
    prompts = -(-rankings // rlhf_studio.N)
    datasets = [Dataset(db, rankings) for db in args.databases.split(",")]
    for dataset in datasets:
        log(f"setup: {dataset.database}, {rankings:,} rankings ...")
        dataset.build(prompts)
    studio = None
    if args.labelstudio:
        import labelstudio

        # Its own data directory: other benchmarks may run Label Studio from the shared one.
        home = SCRATCH / "export-labelstudio"
        labelstudio.HOME, labelstudio.DATA = home, home / "data"
        labelstudio.MIGRATED, labelstudio.GUARD = home / "migrated", home / "guard"
        labelstudio.NET_LOG = home / "off-loopback.log"
        studio = labelstudio.LabelStudio()
        log("setup: Label Studio ...")
        studio.prepare(USERS)
        studio.import_prompts(prompts_file(prompts))
        studio.stop()
        studio.top_up(rankings)
    try:
        measure(args, trees, commits, datasets, studio)
    finally:
        if studio is not None:
            studio.stop()
    table(args.out)


def measure(args, trees: list[Path], commits: list[str], datasets: list[Dataset],
            studio) -> None:
    rankings = args.rankings
    with open(args.out, "a") as out:
        def record(**fields):
            line = {"benchmark": "export", "rankings": rankings, "load": os.getloadavg()[0],
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
            out.write(json.dumps(line) + "\n")
            out.flush()

        reference = {}
        for rep in range(1, args.repeat + 1):
            if studio is not None:
                log(f"rep {rep}: Label Studio ...")
                for kind, result in labelstudio_export(studio).items():
                    record(rep=rep, system="labelstudio", kind=kind, **result)
                    log(f"  {kind}: {result['seconds']:.2f} s")
            for dataset in datasets:
                order = [(tree, commit, workers)
                         for tree, commit in zip(trees, commits, strict=True)
                         for workers in args.workers]
                for tree, commit, workers in (order[::-1] if rep % 2 == 0 else order):
                    result = dataset.export(tree, workers)
                    first = reference.setdefault(dataset.database, result)
                    differ = same_output(first, result)
                    record(rep=rep, system="rlhf-studio", database=dataset.database,
                           commit=commit, workers=workers, tree=str(tree),
                           identical=not differ, differ=differ, **strip(result))
                    log(f"  {dataset.database} {commit} W={workers or 'default'}: "
                        f"{result['seconds']:.2f} s, {result['cpu_seconds']:.2f} CPU s, "
                        f"peak {result['peak_rss_mb']:.0f} MB; "
                        f"{'identical' if not differ else 'DIFFERENT: ' + ', '.join(differ)}")


def memory(args) -> None:
    """Peak resident memory of one export per tree, at each size: flat means no growth."""
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    with open(args.out, "a") as out:
        for rankings in [int(n) for n in args.rankings.split(",")]:
            for database in args.databases.split(","):
                dataset = Dataset(database, rankings)
                log(f"setup: {database}, {rankings:,} rankings ...")
                dataset.build(-(-rankings // rlhf_studio.N))
                for tree in trees:
                    result = dataset.export(tree)
                    out.write(json.dumps({"benchmark": "export-memory", "rankings": rankings,
                                          "database": database, "commit": commit_of(tree),
                                          "load": os.getloadavg()[0], **strip(result)}) + "\n")
                    out.flush()
                    log(f"  {commit_of(tree)}: {result['seconds']:.2f} s, peak "
                        f"{result['peak_rss_mb']:.0f} MB (+{result['rss_growth_mb']:.0f})")


def profile(args) -> None:
    """cProfile of one export of this checkout (an existing dataset; `run` or `memory` builds
    it): DIR/<database>.prof and the top functions by own and cumulative time."""
    dataset = Dataset(args.database, args.rankings)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "child-profile",
                           str(Path(args.out).resolve() / args.database)],
                          cwd=ROOT, env=dataset.env(), text=True)
    sys.exit(done.returncode)


def child_profile(prefix: str) -> None:
    import cProfile
    import pstats

    import django

    django.setup()
    from annotate import services
    from annotate.models import Project

    project = Project.objects.get(slug=rlhf_studio.SLUG)
    params = services.ExportParams(formats=("trl-jsonl",))
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    services.export_create(project=project, params=params, created_by=None, run_now=True)
    profiler.disable()
    print(f"export: {time.perf_counter() - started:.2f} s (profiled)")
    profiler.dump_stats(prefix + ".prof")
    with open(prefix + ".txt", "w") as text:
        for key in ("tottime", "cumulative"):
            pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(30)
    print(Path(prefix + ".txt").read_text()[:6000])


def child_import(jsonl: str) -> None:
    import django

    django.setup()
    from annotate import services
    from annotate.models import Project

    project = Project.objects.get(slug=rlhf_studio.SLUG)
    with open(jsonl, "rb") as binary:
        services.prompts_import(project=project, binary=binary, filename=Path(jsonl).name)


def table(path: str) -> None:
    """Medians per system, and each against Label Studio's faster export."""
    rows = [json.loads(line) for line in open(path)]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("benchmark") != "export":
            continue
        if row["system"] == "labelstudio":
            key = ("Label Studio 1.23.2, SQLite", row["kind"])
        else:
            workers = f", W={row['workers']}" if row.get("workers") else ""
            key = (f"rlhf-studio {row['commit']}{workers}", row["database"])
        groups.setdefault(key, []).append(row)
    medians = {key: statistics.median(r["seconds"] for r in group)
               for key, group in groups.items()}
    theirs = min((v for (system, _), v in medians.items() if system.startswith("Label")),
                 default=None)
    cpu = {key: statistics.median(r.get("cpu_seconds", float("nan")) for r in group)
           for key, group in groups.items()}
    theirs_cpu = min((v for (system, _), v in cpu.items() if system.startswith("Label")),
                     default=None)
    print("| system | database / export | seconds (runs) | median s | CPU s (median) "
          "| peak RSS MB (growth) | vs Label Studio's fastest: wall / CPU |")
    print("|---|---|---|---|---|---|---|")
    for key, group in groups.items():
        runs = " / ".join(f"{r['seconds']:.2f}" for r in group)
        peak = statistics.median(r["peak_rss_mb"] for r in group)
        growth = statistics.median(r["rss_growth_mb"] for r in group)
        ratio = (f"{theirs / medians[key]:.1f}x / {theirs_cpu / cpu[key]:.1f}x"
                 if theirs else "")
        print(f"| {key[0]} | {key[1]} | {runs} | {medians[key]:.2f} | {cpu[key]:.2f} "
              f"| {peak:.0f} (+{growth:.0f}) | {ratio} |")
    ours = [r for r in rows if r.get("system") == "rlhf-studio"]
    print(f"\nour exports compared with the first tree's on the same database: "
          f"{sum(r['identical'] for r in ours)} of {len(ours)} identical byte for byte")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("child-"):
        sys.path.insert(0, str(ROOT))
        {"child-import": child_import, "child-profile": child_profile}[sys.argv[1]](sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run")
    one.add_argument("--trees", default=".")
    one.add_argument("--databases", default="postgres,sqlite")
    one.add_argument("--rankings", type=int, default=10_000)
    one.add_argument("--repeat", type=int, default=3)
    one.add_argument("--no-labelstudio", dest="labelstudio", action="store_false")
    one.add_argument("--workers", default="", type=lambda text: [
        int(n) for n in text.split(",") if n] or [None],
                     help="EXPORT_WORKERS values to export with, each tree, e.g. 1,2 "
                          "(default: the tree's own default)")
    one.add_argument("--out", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--trees", default=".")
    mem.add_argument("--databases", default="sqlite")
    mem.add_argument("--rankings", default="10000,100000")
    mem.add_argument("--out", required=True)
    prof = sub.add_parser("profile")
    prof.add_argument("--database", default="sqlite")
    prof.add_argument("--rankings", type=int, default=10_000)
    prof.add_argument("--out", required=True)
    tab = sub.add_parser("table")
    tab.add_argument("path")
    args = parser.parse_args()
    if args.command == "table":
        table(args.path)
    else:
        {"run": run, "memory": memory, "profile": profile}[args.command](args)


if __name__ == "__main__":
    main()
