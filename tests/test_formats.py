"""Model formats guessed from file names."""

from __future__ import annotations

import pytest

from cas.formats import guess_format, guess_tree_format


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("resnet50.onnx", "onnx"),
        ("dir/model.safetensors", "safetensors"),
        ("MODEL.ONNX", "onnx"),
        ("w.pt", "pytorch"),
        ("w.pth", "pytorch"),
        ("llama.Q4.gguf", "gguf"),
        ("m.tflite", "tflite"),
        ("m.h5", "keras"),
        ("m.npz", "numpy"),
        ("README.md", None),
        ("noext", None),
        ("archive.tar.gz", None),
    ],
)
def test_guess_format(name: str, fmt: str | None) -> None:
    assert guess_format(name) == fmt


def test_hf_snapshot_is_hf() -> None:
    assert guess_tree_format(["config.json", "model.safetensors", "tokenizer.json"]) == "hf"
    assert guess_tree_format(["sub/config.json", "sub/pytorch_model.bin"]) == "hf"


def test_config_without_weights_is_not_hf() -> None:
    assert guess_tree_format(["config.json", "notes.txt"]) is None


def test_most_common_format_wins() -> None:
    assert guess_tree_format(["a.onnx", "b.onnx", "c.pt", "readme.md"]) == "onnx"


def test_no_known_format() -> None:
    assert guess_tree_format([]) is None
    assert guess_tree_format(["a.txt", "b.md"]) is None
