"""Load an automl bundle with plain segmentation_models_pytorch, albumentations and onnxruntime
(no automl import). This file is the README's snippet; tests/test_bundle.py runs it.

Usage: python plain_loading_snippet.py BUNDLE_DIR IMAGE
"""
import sys

import albumentations as A
import numpy as np
import onnxruntime as ort
import segmentation_models_pytorch as smp
import torch
from PIL import Image

bundle, image_path = sys.argv[1], sys.argv[2]

image = np.asarray(Image.open(image_path).convert("RGB"))             # H×W×3 uint8
h, w = image.shape[:2]
preprocess = A.load(f"{bundle}/preprocess.yaml", data_format="yaml")  # normalise, pad bottom/right to /32
x = preprocess(image=image)["image"].transpose(2, 0, 1)[None]         # 1×3×H'×W' float32

# PyTorch: the segmentation_models_pytorch model (save_pretrained format, no download)
model = smp.from_pretrained(f"{bundle}/model").eval()
with torch.no_grad():
    out = model(torch.from_numpy(x))
logits = out[0] if isinstance(out, tuple) else out                     # a model with an aux head returns a tuple
mask_torch = logits[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)

# ONNX Runtime: model.onnx (fp32) or model.int8.onnx (INT8)
session = ort.InferenceSession(f"{bundle}/model.int8.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {"input": x})[0]
mask_onnx = logits[0, :, :h, :w].argmax(0).astype(np.uint8)
