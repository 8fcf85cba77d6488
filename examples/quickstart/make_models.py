#!/usr/bin/env python3
"""Generate the quickstart's small, real model files, deterministically.

The outputs are committed under ``models/``, so you never need to run this: it is here to show
where the bytes came from and to regenerate them byte for byte. Fixed seeds and pinned format
versions make a re-run produce identical files.

    models/mlp.onnx                     a 2-layer MLP (MatMul + Add + Relu), built with `onnx`
    models/linear-probe.safetensors     a linear classifier head, safetensors written by hand
    models/tiny-bert/                   a Hugging Face style model directory (a vvstore tree):
        config.json, tokenizer_config.json, vocab.txt, model.safetensors

Only the ONNX model needs a package (``pip install onnx``; ``onnxruntime`` too, if installed,
runs the model once as a check). The safetensors files need nothing but the standard library.

Usage:
    python make_models.py [--out DIR] [--skip-onnx]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240601

# --- small numeric helpers (no numpy needed) ---------------------------------------------------


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32, as it will be stored."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def randn(rng: random.Random, n: int, scale: float) -> list[float]:
    """n normally distributed float32 values with standard deviation `scale`."""
    return [_f32(rng.gauss(0.0, scale)) for _ in range(n)]


def pack_f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def matvec(x: list[float], w: list[float], rows: int, cols: int) -> list[float]:
    """x[rows] @ w[rows, cols] (row-major) -> [cols]."""
    return [sum(x[i] * w[i * cols + j] for i in range(rows)) for j in range(cols)]


# --- safetensors, by hand ------------------------------------------------------------------------
# Format (https://huggingface.co/docs/safetensors): 8 bytes little-endian u64 N, then N bytes of
# UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
# then the tensors' raw little-endian bytes; offsets are relative to the end of the header.

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` ({name: (dtype, shape, raw bytes)}) in name order, contiguously."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset, blobs = 0, []
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        if len(data) != math.prod(shape) * DTYPE_SIZE[dtype]:
            raise ValueError(f"{name}: {len(data)} bytes do not fit {dtype}{shape}")
        end = offset + len(data)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad with spaces so the data starts 8-byte aligned
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    """Parse a safetensors file back, checking the offsets cover the data exactly."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    out, covered = {}, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = t["data_offsets"]
        if begin != covered or end - begin != math.prod(t["shape"]) * DTYPE_SIZE[t["dtype"]]:
            raise ValueError(f"{path}: bad offsets for {name}")
        covered = end
        out[name] = (t["dtype"], t["shape"], data[begin:end])
    if covered != len(data):
        raise ValueError(f"{path}: {len(data) - covered} trailing bytes")
    return out


# --- (1) ONNX: a 2-layer MLP --------------------------------------------------------------------

MLP_IN, MLP_HIDDEN, MLP_OUT = 16, 32, 4


def mlp_weights() -> dict[str, list[float]]:
    rng = random.Random(SEED)
    return {
        "W1": randn(rng, MLP_IN * MLP_HIDDEN, 1 / math.sqrt(MLP_IN)),
        "b1": randn(rng, MLP_HIDDEN, 0.1),
        "W2": randn(rng, MLP_HIDDEN * MLP_OUT, 1 / math.sqrt(MLP_HIDDEN)),
        "b2": randn(rng, MLP_OUT, 0.1),
    }


def mlp_reference(x: list[float], w: dict[str, list[float]]) -> list[float]:
    z1 = matvec(x, w["W1"], MLP_IN, MLP_HIDDEN)
    h = [max(0.0, a + b) for a, b in zip(z1, w["b1"], strict=True)]
    return [a + b for a, b in zip(matvec(h, w["W2"], MLP_HIDDEN, MLP_OUT), w["b2"], strict=True)]


def make_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    w = mlp_weights()
    shapes = {"W1": [MLP_IN, MLP_HIDDEN], "b1": [MLP_HIDDEN],
              "W2": [MLP_HIDDEN, MLP_OUT], "b2": [MLP_OUT]}
    inits = [helper.make_tensor(k, TensorProto.FLOAT, shapes[k], pack_f32(w[k]), raw=True)
             for k in ("W1", "b1", "W2", "b2")]
    nodes = [
        helper.make_node("MatMul", ["input", "W1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="fc1_bias"),
        helper.make_node("Relu", ["h1b"], ["h1r"], name="relu"),
        helper.make_node("MatMul", ["h1r", "W2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["logits"], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", MLP_IN])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", MLP_OUT])],
        initializer=inits,
    )
    # Pin IR and opset versions: the bytes must not depend on which onnx version runs this.
    model = helper.make_model(graph, producer_name="vvstore-quickstart", producer_version="1",
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.doc_string = "vvstore quickstart: a 2-layer MLP, 16 -> 32 -> 4, random weights"
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString(deterministic=True))
    onnx.checker.check_model(str(path), full_check=True)
    print(f"  onnx.checker: {path.name} ok")
    _try_onnxruntime(path, w)


def _try_onnxruntime(path: Path, w: dict[str, list[float]]) -> None:
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("  onnxruntime not installed: skipped running the model")
        return
    x = randn(random.Random(SEED + 1), MLP_IN, 1.0)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": np.array([x], dtype=np.float32)})
    want = mlp_reference(x, w)
    err = max(abs(a - b) for a, b in zip(got[0].tolist(), want, strict=True))
    if err > 1e-4:
        raise SystemExit(f"onnxruntime output differs from the reference by {err}")
    print(f"  onnxruntime {ort.__version__}: {path.name} runs, output {got.shape}, "
          f"max error vs reference {err:.1e}")


# --- (2) a single safetensors file: a linear classifier head ------------------------------------


def make_linear_probe(path: Path) -> None:
    rng = random.Random(SEED + 2)
    n_in, n_cls = 16, 4
    write_safetensors(path, {
        "classifier.weight": ("F32", [n_cls, n_in], pack_f32(randn(rng, n_cls * n_in, 0.25))),
        "classifier.bias": ("F32", [n_cls], pack_f32([0.0] * n_cls)),
    }, metadata={"format": "pt", "labels": "cat,dog,bird,fish"})
    read_safetensors(path)


# --- (3) a Hugging Face style directory: tiny-bert ----------------------------------------------

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a an and of to in is it that for on with as was by at be this are from or not "
         "model models store file files hash tree digest blob version fetch cache weights "
         "tensor layer token vocab bert tiny small quick start demo onnx safe").split()

BERT = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
}


def bert_tensors(vocab_size: int) -> dict[str, tuple[str, list[int], bytes]]:
    """BertModel's parameter names and shapes (nn.Linear weights are [out, in])."""
    rng = random.Random(SEED + 3)
    h, i, std = BERT["hidden_size"], BERT["intermediate_size"], BERT["initializer_range"]
    shapes: dict[str, list[int]] = {
        "embeddings.word_embeddings.weight": [vocab_size, h],
        "embeddings.position_embeddings.weight": [BERT["max_position_embeddings"], h],
        "embeddings.token_type_embeddings.weight": [BERT["type_vocab_size"], h],
        "embeddings.LayerNorm.weight": [h],
        "embeddings.LayerNorm.bias": [h],
        "pooler.dense.weight": [h, h],
        "pooler.dense.bias": [h],
    }
    for n in range(BERT["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for lin, (out_f, in_f) in {
            "attention.self.query": (h, h), "attention.self.key": (h, h),
            "attention.self.value": (h, h), "attention.output.dense": (h, h),
            "intermediate.dense": (i, h), "output.dense": (h, i),
        }.items():
            shapes[p + lin + ".weight"] = [out_f, in_f]
            shapes[p + lin + ".bias"] = [out_f]
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + ln + ".weight"] = [h]
            shapes[p + ln + ".bias"] = [h]
    out = {}
    for name in sorted(shapes):
        shape, n = shapes[name], math.prod(shapes[name])
        if name.endswith("LayerNorm.weight"):
            values = [1.0] * n
        elif name.endswith(".bias"):
            values = [0.0] * n
        else:
            values = randn(rng, n, std)
        out[name] = ("F32", shape, pack_f32(values))
    return out


def _json(path: Path, doc: dict[str, object]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_tiny_bert(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + WORDS
    (d / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    _json(d / "config.json", BERT | {"vocab_size": len(vocab)})
    _json(d / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 32,
        "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
        "sep_token": "[SEP]", "mask_token": "[MASK]",
    })
    write_safetensors(d / "model.safetensors", bert_tensors(len(vocab)), metadata={"format": "pt"})
    read_safetensors(d / "model.safetensors")


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "models", help="output directory")
    ap.add_argument("--skip-onnx", action="store_true", help="do not (re)build the ONNX model")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing into {out}")
    if not args.skip_onnx:
        try:
            make_onnx(out / "mlp.onnx")
        except ImportError:
            print("the onnx package is needed for mlp.onnx: pip install onnx "
                  "(or pass --skip-onnx)", file=sys.stderr)
            return 1
    make_linear_probe(out / "linear-probe.safetensors")
    make_tiny_bert(out / "tiny-bert")
    total = 0
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        total += f.stat().st_size
        print(f"  {f.relative_to(out).as_posix():40s} {f.stat().st_size:>8,} bytes")
    print(f"  total {total:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
