"""Peak memory of each Ray Train worker with data.streaming on and off, as the data grows 4x.

Writes a generated Parquet data set (experiments/make_parquet_data.py: `--features` standard-normal
columns, 4 classes) of `--rows` N and of 4N rows in a temp folder, as files of 50k rows, plus the
same rows as one Parquet file for the in-memory path (which reads one file). For each size it runs
`rayfit train` (the venv's CLI, as a subprocess) twice on the same rows with the same workers
(2 workers x {CPU: 0.5}, batch 1024 per worker, 1 epoch, tracking off, progress log):

  streaming  `data.streaming: true`: Ray Data reads the files in blocks and each worker gets its
             rows through `ray.train.get_dataset_shard`;
  in-memory  `data.streaming: false`: the driver and every worker load the whole table.

While a run trains, psutil samples every process under the `rayfit train` process every 0.2 s and
keeps the peak RSS of each Ray Train worker (process title `ray::RayTrainWorker...`), of the other
Ray workers (Ray Data's read tasks) and of the driver. The table also gives rank 0's own
`peak_memory_mb` (ru_maxrss, from runs/NAME/history.json) as a cross-check, the epoch time and
samples/s from the history and each run's wall time, then the ratio of the peak worker RSS at 4N
(and at each `--streaming-only` size, run with streaming alone: in-memory may not fit) to that at N
for each mode. RSS is the figure here; timings on a shared 2-core machine are noise.

Run from the repository root (about 10 minutes at the default sizes, 4 more with 4000000):

    .venv/bin/python experiments/benchmarks/streaming_memory.py [--rows 250000] [--features 32] \
        [--streaming-only 4000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_parquet_data import write_parquet_data  # noqa: E402

CLI = Path(sys.executable).parent / "rayfit"
HIDDEN, BATCH, MB = [128, 64, 32], 1024, 2**20
TRAIN_WORKER = "RayTrainWorker"
DATA_TASKS = ("Read", "MapBatches", "SplitCoordinator")  # Ray Data's read/encode tasks and split actor


def folder_mb(folder: Path) -> float:
    """Bytes on disk under `folder`, in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MB


def one_file(parts: Path) -> Path:
    """The rows of a folder of Parquet files as one file (the in-memory path reads one file)."""
    single = parts.with_suffix(".parquet")
    dataset = pads.dataset(parts, format="parquet")
    with pq.ParquetWriter(single, dataset.schema) as writer:
        for batch in dataset.to_batches():
            writer.write_batch(batch)
    return single


class PeakSampler(threading.Thread):
    """Peak RSS per process under `root`, sampled every `every_s` until stopped."""

    def __init__(self, root: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.every_s = psutil.Process(root), every_s
        self.peaks: dict[int, int] = {}
        self.titles: dict[int, set[str]] = {}  # a Ray worker process retitles itself per task
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in processes:
                try:
                    title, rss = " ".join(proc.cmdline()), proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                self.peaks[proc.pid] = max(rss, self.peaks.get(proc.pid, 0))
                self.titles.setdefault(proc.pid, set()).add(title.split(" ")[0])
            self.done.wait(self.every_s)

    def peaks_mb(self, *words: str) -> list[float]:
        """Peak RSS (MiB), ascending, of the Ray processes with one of `words` in a title."""
        return sorted(
            self.peaks[pid] / MB for pid, titles in self.titles.items()
            if any(t.startswith("ray::") and w in t for t in titles for w in words)
        )


def run(folder: Path, name: str, source: Path, streaming: bool) -> dict[str, float]:
    """One `rayfit train` of 1 epoch; its peak RSS figures and history."""
    experiment = {
        "name": name,
        "data": {"source": str(source), "target": "label", "streaming": streaming,
                 "val_fraction": 0.1, "test_fraction": 0.0},
        "model": {"hidden_units": HIDDEN},
        "trainer": {"epochs": 1, "batch_size": BATCH, "progress": "log"},
        "tracking": {"enabled": False, "storage": str(folder / "runs")},
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 0.5}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    log = folder / f"{name}.log"
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([str(CLI), "train", str(path)], stdout=out, stderr=subprocess.STDOUT)
        sampler = PeakSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"rayfit train {name} exited {code}; its log ends:\n{log.read_text()[-3000:]}")
    workers = sampler.peaks_mb(TRAIN_WORKER)
    if not workers:
        raise RuntimeError(f"{name}: no Ray Train worker process was seen; titles: {sampler.titles}")
    row = json.loads((folder / "runs" / name / "history.json").read_text())[-1]
    return {
        "worker_max": workers[-1], "worker_min": workers[0], "workers": len(workers),
        "data_tasks": max(sampler.peaks_mb(*DATA_TASKS), default=0.0), "driver": sampler.peaks[proc.pid] / MB,
        "rank0_maxrss": row["peak_memory_mb"], "epoch_s": row["epoch_time_s"],
        "samples_per_s": row["samples_per_s"], "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    """Write both sizes, run both modes on each, print the table and the 4N/N ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000, help="N; the second size is 4N")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--streaming-only", type=int, nargs="*", default=[], metavar="ROWS",
                        help="more sizes to run with streaming only (in-memory may not fit)")
    args = parser.parse_args(argv)
    sizes = (args.rows, 4 * args.rows)
    figures: dict[tuple[int, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in [*sizes, *args.streaming_only]:
            parts = write_parquet_data(folder / f"rows{rows}", rows, args.features)
            print(f"{rows:>9} rows x {args.features}: Parquet {folder_mb(parts):.1f} MiB in "
                  f"{len(list(parts.iterdir()))} files, {rows * args.features * 4 / MB:.1f} MiB as float32",
                  flush=True)
            sources = {"streaming": parts} | ({"in-memory": one_file(parts)} if rows in sizes else {})
            for mode, source in sources.items():
                figures[rows, mode] = run(folder, f"{mode[:2]}{rows}", source, mode == "streaming")
                f = figures[rows, mode]
                print(f"  {mode}: done in {f['wall_s']:.0f}s, {f['workers']} train worker processes", flush=True)
    print(f"\n2 workers x CPU 0.5, batch {BATCH} per worker, 1 epoch, MLP {HIDDEN}; RSS peaks sampled "
          "every 0.2 s, MiB. Timings come from a shared 2-core machine: only the RSS is meant to compare.")
    print(f"{'rows':>9} {'mode':<10}{'worker max':>11}{'worker min':>11}{'rank0 maxrss':>13}"
          f"{'data tasks':>11}{'driver':>8}{'epoch s':>9}{'samples/s':>10}{'wall s':>8}")
    for (rows, mode), f in figures.items():
        data_tasks = f"{f['data_tasks']:.0f}" if f["data_tasks"] else "-"
        print(f"{rows:>9} {mode:<10}{f['worker_max']:>11.0f}{f['worker_min']:>11.0f}{f['rank0_maxrss']:>13.0f}"
              f"{data_tasks:>11}{f['driver']:>8.0f}{f['epoch_s']:>9.1f}{f['samples_per_s']:>10.0f}"
              f"{f['wall_s']:>8.0f}")
    for (rows, mode), large in figures.items():
        small = figures[sizes[0], mode]
        if rows != sizes[0]:
            print(f"{mode}: peak worker RSS at {rows} rows / at {sizes[0]} rows = "
                  f"{large['worker_max'] / small['worker_max']:.2f}x (driver {large['driver'] / small['driver']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
