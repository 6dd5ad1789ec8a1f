"""`rayfit` command line: thin: parse, load the config, call the library, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rayfit.errors import RayfitError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


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

    submit = commands.add_parser("submit", help="run `rayfit train` as a job on a Ray cluster")
    submit.add_argument("experiment", help="experiment file, relative to the working directory")
    submit.add_argument("--address", required=True, help="the cluster's dashboard, http://HOST:8265")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--working-dir", default=".", help="folder uploaded with the job (default .)")

    evaluate = commands.add_parser("evaluate", help="test metrics of a finished run")
    evaluate.add_argument("run", help="run folder, or run name under ./runs")

    predict = commands.add_parser("predict", help="predict rows of a CSV/Parquet file with a finished run")
    predict.add_argument("run", help="run folder, or run name under ./runs")
    predict.add_argument("--input", required=True, help="CSV or Parquet with the feature columns")
    predict.add_argument("--output", required=True, help="CSV to write, with a prediction column")
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
        return EXIT_BAD_INPUT


def cmd_train(args: argparse.Namespace) -> int:
    from rayfit.loop import TrainingFailed
    from rayfit.run_folder import RunFinished
    from rayfit.timing import hint
    from rayfit.trainer import Trainer

    overrides = args.overrides + (["scaling.num_workers=0"] if args.local else [])
    trainer = Trainer(args.experiment, overrides, resume=args.resume)
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
    if result.interrupted:
        print(f"paused ({result.stop_reason}); run the same command again to resume", file=sys.stderr)
        return 128 + (2 if "SIGINT" in (result.stop_reason or "") else 15)
    print(json.dumps({"run_dir": str(result.run_dir), "stop_reason": result.stop_reason,
                      **result.test_metrics}, indent=1))
    advice = hint(result.history)
    if advice:
        print(f"hint: {advice}", file=sys.stderr)  # stderr: stdout stays one JSON document
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from rayfit.distributed.submit import submit

    return submit(args.experiment, args.address, args.overrides, Path(args.working_dir).resolve())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rayfit.evaluation import evaluate_run

    print(json.dumps(evaluate_run(args.run), indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rayfit.data.sources import read_source
    from rayfit.errors import DataError
    from rayfit.inference import SavedModel, resolve_run

    output = Path(args.output)
    if output.exists():
        raise DataError(f"--output {output}: the file exists; choose a new path (nothing is overwritten)")
    model = SavedModel(resolve_run(args.run))
    frame = read_source(args.input)
    frame[f"predicted_{model.info.target}"] = model.predict_frame(frame, args.input)
    frame.to_csv(output, index=False)
    print(f"wrote {len(frame)} predictions to {output}")
    return 0


COMMANDS = {"train": cmd_train, "submit": cmd_submit, "evaluate": cmd_evaluate, "predict": cmd_predict}

if __name__ == "__main__":
    sys.exit(main())
