"""The bundle: what the final stage ships and how to load it (``load_bundle``).

Every file is in its library's own format, so the bundle also loads without ``automl``:
``smp.from_pretrained(bundle/model)``, ``A.load(bundle/preprocess.yaml)``,
``onnxruntime.InferenceSession(bundle/model.int8.onnx)``.
"""

from automl.bundle.layout import Manifest
from automl.bundle.load import BundleError, load_bundle, read_manifest
from automl.bundle.predictor import OnnxPredictor, Predictor, TorchPredictor
from automl.bundle.tta import TTASpec
from automl.bundle.variants import VARIANTS, Variant
from automl.bundle.write import write_bundle

__all__ = ["VARIANTS", "BundleError", "Manifest", "OnnxPredictor", "Predictor", "TTASpec", "TorchPredictor",
           "Variant", "load_bundle", "read_manifest", "write_bundle"]
