"""The MLflow model a run logs: a pyfunc whose predict takes raw feature columns (strings for
categorical columns, unscaled numbers) and returns the target in its own terms, through the very
code `rayfit predict` runs (inference.SavedModel), so a served model answers exactly as predict.

Logging is cheap on purpose: the artifacts are the run's model folder as written (no framework
flavor export), the requirements are given (not inferred), and the model is "models from code"
(pyfunc_entry.py, no pickle): it imports rayfit, so serve it with `--env-manager local` from an
environment where rayfit is installed.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from rayfit.backends.registry import BACKENDS
from rayfit.data import DataInfo
from rayfit.errors import RayfitError
from rayfit.imports import is_import_path
from rayfit.inference import SavedModel, read_model_folder

ENTRY = Path(__file__).with_name("pyfunc_entry.py")
ARTIFACT = "model"  # the run's model/ folder, under this key (and name) in the logged model
SOURCE = "the request"  # what error messages call the rows they were given
COMMON = ("numpy", "pandas", "pyarrow", "pydantic", "pyyaml")  # what inference imports besides the framework


class RayfitPyfunc(PythonModel):
    """Raw rows in, predicted_<target> out (plus prob_<label> columns with probabilities=True)."""

    def load_context(self, context: PythonModelContext) -> None:
        folder = Path(context.artifacts[ARTIFACT])
        trust_code = bool((context.model_config or {}).get("trust_code", False))
        self.model = SavedModel(folder.parent, trust_code)  # SavedModel reads <run>/model/

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """predict_table of `rayfit predict`; a bad row is MLflow's bad request, in predict's words."""
        probabilities = bool((params or {}).get("probabilities", False))
        try:
            return self.model.predict_table(model_input.reset_index(drop=True), SOURCE, probabilities)
        except RayfitError as exc:  # the scoring server answers 400 with this one line
            raise MlflowException.invalid_parameter_value(str(exc)) from None


def signature(info: DataInfo) -> ModelSignature:
    """The prediction column and the probabilities param. No input schema, on purpose: rows go to
    predict's own checks and messages, parsed as `rayfit predict` parses a file (MLflow's schema
    would refuse an int column for a double one, parse a CSV by its types and name no column
    when a value is not a number); the input example shows the columns."""
    output = "double" if info.task == "regression" else label_type(info.classes)
    return ModelSignature(
        outputs=Schema([ColSpec(output, f"predicted_{info.target}")]),
        params=ParamSchema([ParamSpec("probabilities", "boolean", False)]),
    )


def label_type(classes: list) -> str:
    """MLflow's type for the class labels: long when they are all integers, else string."""
    return "long" if all(isinstance(c, int) and not isinstance(c, bool) for c in classes) else "string"


def input_example(info: DataInfo) -> pd.DataFrame:
    """One raw row: each numeric column at its training mean, each categorical at its first value."""
    means = dict(zip(info.input_names, info.mean))
    row = {name: info.vocab[name][0] if name in info.vocab else float(means.get(name, 0.0))
           for name in info.features}
    return pd.DataFrame([row])


def requirements(backend: str) -> list[str]:
    """Pinned pip requirements of inference for `backend`: given, so that MLflow infers nothing."""
    return [f"{name}=={version(name)}" for name in BACKENDS[backend].distributions + COMMON]


class PyfuncFlavor:
    """mlflow.pyfunc as the flavor `Model.log` saves with (what `pyfunc.log_model` calls), so that
    `validate_serving_input=False` can be given: MLflow's check of the input example loads the
    model, framework and all, in the process that logs it (2 s of a 10 s run on 2 cores). The
    served model's answers are checked by rayfit's tests instead."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(**kwargs: Any) -> None:
        kwargs.pop("validate_serving_input", None)  # Model.log's own option, not save_model's
        mlflow.pyfunc.save_model(**kwargs)


def log_pyfunc_model(model_dir: Path, name: str = "model") -> None:
    """Log the run's model folder (model file, config.yaml, data_info.json) as a pyfunc model in
    the active MLflow run. Code a config names is trusted: the run that logs it trained with it."""
    cfg, info = read_model_folder(Path(model_dir).parent, trust_code=True)
    names_code = is_import_path(cfg.model.type) or is_import_path(cfg.schedule.name)
    Model.log(
        artifact_path=None,
        flavor=PyfuncFlavor,
        validate_serving_input=False,
        name=name,
        python_model=str(ENTRY),
        artifacts={ARTIFACT: str(model_dir)},
        signature=signature(info),
        input_example=input_example(info),
        pip_requirements=requirements(cfg.backend),
        model_config={"trust_code": names_code},
    )
