"""The file MLflow runs to load a rayfit pyfunc model ("models from code": nothing is unpickled)."""

import mlflow.models

from rayfit.serving.pyfunc_model import RayfitPyfunc

mlflow.models.set_model(RayfitPyfunc())
