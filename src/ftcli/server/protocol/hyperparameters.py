"""A fine-tuning job's hyperparameters, one typed model per training method. The schema itself lives in the data core
(data/hyperparameters.py), because `ftcli train -H` checks against it on the client too and the service layer may
not import the server; the server's routes, worker and job objects use it from here."""

from __future__ import annotations

from ftcli.data.hyperparameters import (
    AUTO,
    JOB_LEVEL,
    METHODS,
    Auto,
    DpoHyperparameters,
    InvalidHyperparameter,
    MethodName,
    ReinforcementHyperparameters,
    SupervisedHyperparameters,
    TrainingHyperparameters,
    parse,
)

__all__ = [
    "AUTO",
    "JOB_LEVEL",
    "METHODS",
    "Auto",
    "DpoHyperparameters",
    "InvalidHyperparameter",
    "MethodName",
    "ReinforcementHyperparameters",
    "SupervisedHyperparameters",
    "TrainingHyperparameters",
    "parse",
]
