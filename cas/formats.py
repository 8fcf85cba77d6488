"""Model formats guessed from file names. Pure.

Example:
    >>> guess_format("resnet50.onnx")
    'onnx'
    >>> guess_tree_format(["config.json", "model.safetensors"])
    'hf'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import PurePosixPath

FORMATS = {
    ".onnx": "onnx",
    ".safetensors": "safetensors",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "bin",
    ".gguf": "gguf",
    ".ggml": "ggml",
    ".ckpt": "checkpoint",
    ".pb": "tensorflow",
    ".tflite": "tflite",
    ".h5": "keras",
    ".keras": "keras",
    ".pkl": "pickle",
    ".joblib": "joblib",
    ".npz": "numpy",
    ".npy": "numpy",
    ".mlmodel": "coreml",
    ".engine": "tensorrt",
    ".mar": "torchserve",
}


def guess_format(name: str) -> str | None:
    """The format a file name suggests, or None."""
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def guess_tree_format(paths: Iterable[str]) -> str | None:
    """`hf` for a Hugging Face style snapshot, else the most common file format."""
    paths = list(paths)
    names = {PurePosixPath(p).name for p in paths}
    counts = Counter(f for f in map(guess_format, paths) if f)
    if "config.json" in names and counts.keys() & {"safetensors", "bin", "pytorch", "gguf", "onnx"}:
        return "hf"
    return counts.most_common(1)[0][0] if counts else None
