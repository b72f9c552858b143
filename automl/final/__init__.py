"""The final stage: retrain the best trial, decide on TTA, export ONNX, quantize to INT8,
measure latency, and write the bundle.

>>> from automl.config import load_study_file             # doctest: +SKIP
>>> from automl.final import run_final
>>> result = run_final(load_study_file("studies/demo.yaml"))
>>> result.bundle_dir, result.report["default_predictor"]["variant"]
"""

from automl.final.pipeline import FinalResult, run_final

__all__ = ["FinalResult", "run_final"]
