"""`rayfit` command line: thin: parse, load the config, call the library, map errors to exit codes.

Nothing heavy (torch, MLflow, Ray) is imported before the experiment file is validated, so a
mistake in it is answered at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from rayfit.errors import ClusterLost, RayfitError
from rayfit.interrupts import from_ctrl_c, keep_dropped_ctrl_c

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
TRUST_CODE_HELP = ("import the code the run's model/config.yaml names (a user model or schedule); "
                   "only for folders you trust: that code runs")
EXIT_INTERRUPTED = 128 + signal.SIGINT  # what a shell reports for a program stopped by Ctrl-C

DESCRIPTION = """\
Train PyTorch and TensorFlow models epoch by epoch from a YAML experiment file,
on Ray, tracked in MLflow. Each run keeps its outputs in runs/NAME/."""

MAIN_EXAMPLES = """\
examples:
  rayfit train experiments/digits_mlp.yaml --local     train in this process
  rayfit runs                                          list the runs under ./runs
  rayfit evaluate digits_mlp                           test metrics of a finished run
  rayfit predict digits_mlp --input rows.csv --output predictions.csv

run `rayfit COMMAND --help` for a command's options and examples."""

TRAIN_EXAMPLES = """\
A run is named by the experiment's `name` (default: the file's name) and lives in
runs/NAME/. Running the same command again resumes an unfinished run from its last
checkpoint; a finished run is left as it is.

examples:
  rayfit train exp.yaml --local                      train in this process, without Ray
  rayfit train exp.yaml --set optimizer.lr=0.01 --new
                                                     changed a setting: a new run, exp-2
  rayfit train exp.yaml --name lr-small --set optimizer.lr=0.0001
                                                     a new run with the name you choose
  rayfit train exp.yaml --set trainer.epochs=60 --extend
                                                     train the finished run exp on to 60 epochs

--extend goes on from the run's last checkpoint (epoch, weights, optimizer state)
with only trainer.epochs changed (and what is free on resume: tracking.*,
scaling.*, trainer.progress); anything else is refused. The learning-rate
schedule is a function of the epoch (or step): past the old end it goes on as that
function does (step/multistep/exponential keep decaying, cosine rises again after
T_max, warmup is not repeated); onecycle without schedule.total_steps and other
schedules sized by the run's length are stretched to the new length. Early
stopping keeps its best value; a run that stopped early cannot be extended."""

SUBMIT_EXAMPLES = """\
examples:
  rayfit submit experiments/digits_mlp.yaml --address http://head:8265
  rayfit submit exp.yaml --address http://head:8265 --set trainer.epochs=5

A cluster started with `ray start --head` (Ray 2.60) uses token authentication: the
token is found as Ray's own clients find it (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
or ~/.ray/auth_token on this machine)."""

EVALUATE_EXAMPLES = """\
examples:
  rayfit evaluate digits_mlp                 a run name under ./runs
  rayfit evaluate path/to/runs/digits_mlp    a run folder
  rayfit evaluate digits_mlp --json          machine-readable

Prints scikit-learn's test metrics for the task (binary: accuracy, precision,
recall, F1, ROC AUC, log loss; multiclass: accuracy, macro/weighted F1, top-3
accuracy; regression: MAE, RMSE, R2) and the confusion matrix."""

PREDICT_EXAMPLES = """\
examples:
  rayfit predict digits_mlp --input rows.csv --output predictions.csv
  rayfit predict digits_mlp --input rows.parquet --output out.csv --probabilities

The output holds the input's columns, predicted_<target>, and with --probabilities
one prob_<label> column per class."""

TUNE_EXAMPLES = """\
examples:
  rayfit tune experiments/digits_sweep.yaml --dry-run   trials, concurrency, most epochs
  rayfit tune experiments/digits_sweep.yaml             run it (again: continues it)

Each trial is a run in runs/SWEEP/trials/TRIAL/. At the end runs/SWEEP/ holds
trials.csv, best.yaml (`rayfit train runs/SWEEP/best.yaml` trains the best trial
again) and plots/."""

EXPORT_EXAMPLES = """\
examples:
  rayfit export digits_mlp --format onnx                  to runs/digits_mlp/exports/onnx/
  rayfit export digits_mlp --format torchscript --output model-ts
  rayfit export tf_run --format savedmodel

onnx and torchscript for torch runs, onnx and savedmodel for TensorFlow runs. The
model takes the encoded columns unscaled (standardization is inside it); the folder
also holds encoding.json: the columns, vocabularies and class labels."""

RUNS_EXAMPLES = """\
examples:
  rayfit runs                        the runs under ./runs (same as `rayfit runs list`)
  rayfit runs --storage other/runs   the runs under another folder
  rayfit runs show digits_mlp        one run: settings, history, test metrics, files
  rayfit runs compare exp exp-2      what differs, and their metrics side by side
  rayfit runs list --server http://127.0.0.1:8000
                                     the tasks of a `rayfit serve` service
  rayfit runs watch TASK_ID --server URL     its epochs as they end (pause, resume, cancel too)"""


def build_parser() -> argparse.ArgumentParser:
    # --verbose and --debug go before or after the command: each subcommand knows them too, with
    # a SUPPRESS default so that it does not overwrite what was given before the command.
    parser = argparse.ArgumentParser(prog="rayfit", description=DESCRIPTION, epilog=MAIN_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_flags(parser, default=False)
    flags = argparse.ArgumentParser(add_help=False)
    add_global_flags(flags, default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, epilog: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, epilog=epilog, parents=[flags],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", "train an experiment (resumes an unfinished run)", TRAIN_EXAMPLES)
    train.add_argument("experiment", help="YAML or JSON experiment file")
    train.add_argument("--name", help="the run's name (default: the experiment's name)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set trainer.epochs=5")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--new", action="store_true",
                       help="a new run: NAME-2, NAME-3, ... when NAME is taken (printed)")
    again.add_argument("--extend", action="store_true",
                       help="train a finished run on to a larger trainer.epochs (see below)")
    again.add_argument("--resume", action="store_true", help="require a checkpoint to resume from")
    train.add_argument("--local", action="store_true",
                       help="train in this process, without Ray (scaling.num_workers=0)")
    train.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")

    submit = command("submit", "run `rayfit train` as a job on a Ray cluster", SUBMIT_EXAMPLES)
    submit.add_argument("experiment", help="experiment file, relative to the working directory")
    submit.add_argument("--address", required=True, help="the cluster's dashboard, http://HOST:8265")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--working-dir", default=".", help="folder uploaded with the job (default .)")

    evaluate = command("evaluate", "test metrics of a finished run", EVALUATE_EXAMPLES)
    evaluate.add_argument("run", help="run folder, or run name under ./runs")
    evaluate.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    predict = command("predict", "predict rows of a CSV/Parquet file with a finished run", PREDICT_EXAMPLES)
    predict.add_argument("run", help="run folder, or run name under ./runs")
    predict.add_argument("--input", required=True, help="CSV or Parquet with the feature columns")
    predict.add_argument("--output", required=True, help="CSV to write, with a prediction column")
    predict.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)
    predict.add_argument("--probabilities", action="store_true", help="add a prob_<label> column per class")

    sweep = command("tune", "a hyperparameter sweep of an experiment with a tune: section", TUNE_EXAMPLES)
    sweep.add_argument("experiment", help="YAML or JSON experiment file with a tune: section")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set tune.num_samples=8")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the trials, concurrency and most epochs, and start nothing")
    sweep.add_argument("--trust-sweep", action="store_true",
                       help="continue a sweep folder rayfit did not start here (Ray Tune unpickles its "
                            "state: code in it runs); only for folders you trust")

    export = command("export", "export a finished run's model as ONNX, TorchScript or SavedModel",
                     EXPORT_EXAMPLES)
    export.add_argument("run", help="run folder, or run name under ./runs")
    export.add_argument("--format", required=True, choices=["onnx", "torchscript", "savedmodel"])
    export.add_argument("--output", metavar="DIR", help="a new folder to write (default RUN/exports/FORMAT)")
    export.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)

    runs = command("runs", "list, show and compare the runs under ./runs", RUNS_EXAMPLES)
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--storage", metavar="DIR", default=argparse.SUPPRESS,
                         help="the folder that holds the runs (default ./runs)")
    runs.add_argument("--storage", metavar="DIR", help="the folder that holds the runs (default ./runs)")
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--server", metavar="URL", default=argparse.SUPPRESS,
                        help="ask a `rayfit serve` service (runs are its task ids)")
    runs.add_argument("--server", metavar="URL", help="ask a `rayfit serve` service (runs are its task ids)")
    views = runs.add_subparsers(dest="view", metavar="VIEW")
    views.add_parser("list", help="one line per run (the default)", parents=[flags, storage, server])
    show = views.add_parser("show", help="one run in detail", parents=[flags, storage, server])
    show.add_argument("name", help="run name (task id with --server)")
    compare = views.add_parser("compare", help="two runs side by side", parents=[flags, storage])
    compare.add_argument("names", nargs=2, metavar="NAME", help="two run names")
    for action in ("pause", "resume", "cancel", "watch"):
        remote = views.add_parser(action, help=f"{action} a task of a service (needs --server)",
                                  parents=[flags, server])
        remote.add_argument("name", metavar="TASK_ID")

    from rayfit.service.commands import SERVE_EXAMPLES, add_serve_arguments

    add_serve_arguments(command("serve", "the training service: REST, WebSocket and a dashboard", SERVE_EXAMPLES))
    return parser


def add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="show the libraries' INFO lines (MLflow, Ray)")
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rayfit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from rayfit import logs

    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    keep_dropped_ctrl_c()
    try:
        return COMMANDS[args.command](args)
    except RayfitError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, ClusterLost):  # Ray's exit hooks would wait on the lost cluster
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        return EXIT_BAD_INPUT
    except BaseException as exc:
        if args.debug or not from_ctrl_c(exc):
            raise
        # Another Ctrl-C while threads and atexit hooks wind down ends the process at once, quietly.
        signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from rayfit.config import load_experiment
    from rayfit.run_folder import fresh_name

    overrides = args.overrides + (["scaling.num_workers=0"] if args.local else [])
    overrides += [f"name={args.name}"] if args.name is not None else []
    config = load_experiment(args.experiment, overrides)  # refused here, before torch is imported
    if args.new:
        name = fresh_name(Path(config.tracking.storage), config.name)
        if name != config.name:
            print(f"new run: {name}", file=sys.stderr)
        config = config.model_copy(update={"name": name})

    from rayfit.loop import TrainingFailed
    from rayfit.run_folder import RunFinished
    from rayfit.summary import summary_lines
    from rayfit.timing import hint
    from rayfit.trainer import Trainer

    started = time.monotonic()
    trainer = Trainer(config, resume=args.resume, extend=args.extend)
    if args.json:  # stdout holds the JSON alone; progress goes to stderr
        from rich.console import Console

        from rayfit.progress import ProgressDisplay

        trainer.display = ProgressDisplay(trainer.config.trainer.progress, Console(stderr=True))
    try:
        result = trainer.fit()
    except RunFinished as done:
        print(done)
        return 0
    except TrainingFailed as exc:
        if args.debug:
            raise
        print(f"error: training failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "status": result.status,
                          "stop_reason": result.stop_reason, **result.test_metrics}, indent=1))
    else:
        print("\n".join(summary_lines(result, trainer.config, time.monotonic() - started)))
    advice = hint(result.history)
    if advice:
        print(f"hint: {advice}", file=sys.stderr)  # stderr: with --json, stdout is one JSON document
    reason = result.stop_reason or ""
    if result.interrupted and "received SIG" in reason:  # the shell's convention for a signal
        return 128 + (2 if "SIGINT" in reason else 15)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from rayfit.distributed.submit import submit

    return submit(args.experiment, args.address, args.overrides, Path(args.working_dir).resolve())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rayfit.evaluation import evaluate_run
    from rayfit.metrics_report import format_report

    report = evaluate_run(args.run, trust_code=args.trust_code)
    print(json.dumps(report.as_dict(), indent=1) if args.json else format_report(report))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rayfit.data.sources import read_source
    from rayfit.errors import DataError
    from rayfit.inference import SavedModel, resolve_run
    from rayfit.run_folder import write_atomic

    output = Path(args.output)
    if output.exists():
        raise DataError(f"--output {output}: the file exists; choose a new path (nothing is overwritten)")
    if not output.parent.is_dir():
        raise DataError(f"--output {output}: the folder {output.parent} does not exist; create it first")
    model = SavedModel(resolve_run(args.run), args.trust_code)
    frame = read_source(args.input)
    table = model.predict_table(frame, args.input, probabilities=args.probabilities)
    frame[table.columns] = table
    write_atomic(output, frame.to_csv(index=False))  # an interrupted write leaves no partial file
    print(f"wrote {len(frame)} predictions to {output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rayfit.serving.export import export_run

    folder = export_run(args.run, args.format, args.output, args.trust_code)
    print(f"wrote the {args.format} model and encoding.json to {folder}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from rayfit import runs_view

    if args.server or args.view in ("pause", "resume", "cancel", "watch"):
        if not args.server:
            raise RayfitError(f"rayfit runs {args.view}: needs --server URL (a `rayfit serve` service)")
        from rayfit.service.commands import remote_runs

        return remote_runs(args)

    storage = runs_view.storage_folder(args.storage)
    if args.view == "show":
        runs_view.render(runs_view.show_run(runs_view.find_run(storage, args.name)))
    elif args.view == "compare":
        runs_view.render(runs_view.compare_runs(*(runs_view.find_run(storage, n) for n in args.names)))
    else:
        runs_view.render(runs_view.list_runs(storage))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rayfit.service.commands import serve

    return serve(args)


def cmd_tune(args: argparse.Namespace) -> int:
    from rayfit.tuning.sweep import load_sweep, plan, run_sweep

    config = load_sweep(args.experiment, args.overrides)  # every refusal before Ray starts
    if args.dry_run:
        print("\n".join(plan(config).lines()))
        return 0
    result = run_sweep(config, trust_folder=args.trust_sweep)
    print(f"{len(result.trials)} trials; outputs in {result.folder} (trials.csv, best.yaml, plots/)")
    if result.best is not None:
        print(f"best: trial {result.best.trial_id}, {config.tune.metric}={result.best.best:.4g} at epoch "
              f"{result.best.best_epoch}; `rayfit train {result.folder / 'best.yaml'}` trains it again")
    for failed in result.failed:
        print(f"trial {failed.trial_id} failed: {failed.stop_reason}", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0


COMMANDS = {"train": cmd_train, "submit": cmd_submit, "tune": cmd_tune, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "export": cmd_export, "runs": cmd_runs, "serve": cmd_serve}

if __name__ == "__main__":
    sys.exit(main())
