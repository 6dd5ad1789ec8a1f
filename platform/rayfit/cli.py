"""`rayfit` command line: thin: parse, load the config, call the library, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from rayfit.errors import ClusterLost, RayfitError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
TRUST_CODE_HELP = ("import the code the run's model/config.yaml names (a user model or schedule); "
                   "only for folders you trust: that code runs")
EXIT_INTERRUPTED = 128 + signal.SIGINT  # what a shell reports for a program stopped by Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayfit", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an experiment (resumes an unfinished run)")
    train.add_argument("experiment", help="YAML or JSON experiment file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set trainer.epochs=5")
    train.add_argument("--resume", action="store_true", help="require a checkpoint to resume from")
    train.add_argument("--local", action="store_true",
                       help="train in this process, without Ray (scaling.num_workers=0)")
    train.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")

    submit = commands.add_parser("submit", help="run `rayfit train` as a job on a Ray cluster")
    submit.add_argument("experiment", help="experiment file, relative to the working directory")
    submit.add_argument("--address", required=True, help="the cluster's dashboard, http://HOST:8265")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--working-dir", default=".", help="folder uploaded with the job (default .)")

    evaluate = commands.add_parser("evaluate", help="test metrics of a finished run")
    evaluate.add_argument("run", help="run folder, or run name under ./runs")
    evaluate.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)

    predict = commands.add_parser("predict", help="predict rows of a CSV/Parquet file with a finished run")
    predict.add_argument("run", help="run folder, or run name under ./runs")
    predict.add_argument("--input", required=True, help="CSV or Parquet with the feature columns")
    predict.add_argument("--output", required=True, help="CSV to write, with a prediction column")
    predict.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
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
    except KeyboardInterrupt:
        if args.debug:
            raise
        # Another Ctrl-C while threads and atexit hooks wind down ends the process at once, quietly.
        signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from rayfit.loop import TrainingFailed
    from rayfit.run_folder import RunFinished
    from rayfit.summary import summary_lines
    from rayfit.trainer import Trainer

    started = time.monotonic()
    overrides = args.overrides + (["scaling.num_workers=0"] if args.local else [])
    trainer = Trainer(args.experiment, overrides, resume=args.resume)
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
    reason = result.stop_reason or ""
    if result.interrupted and "received SIG" in reason:  # the shell's convention for a signal
        return 128 + (2 if "SIGINT" in reason else 15)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from rayfit.distributed.submit import submit

    return submit(args.experiment, args.address, args.overrides, Path(args.working_dir).resolve())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rayfit.evaluation import evaluate_run

    print(json.dumps(evaluate_run(args.run, args.trust_code), indent=1))
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
    frame[f"predicted_{model.info.target}"] = model.predict_frame(frame, args.input)
    write_atomic(output, frame.to_csv(index=False))  # an interrupted write leaves no partial file
    print(f"wrote {len(frame)} predictions to {output}")
    return 0


COMMANDS = {"train": cmd_train, "submit": cmd_submit, "evaluate": cmd_evaluate, "predict": cmd_predict}

if __name__ == "__main__":
    sys.exit(main())
