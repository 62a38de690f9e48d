#!/usr/bin/env python3
"""Opens a LongCrawl checkpoint with Python's safetensors and checks every tensor against the documented layout.

usage: check_safetensors.py CHECKPOINT_DIR
Prints one JSON object {name: {"shape": [...], "sum": float}} for model.safetensors; exits 1 naming the first fault.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def expected_shapes(cfg):
    c, h, v = cfg["d_model"], cfg["heads"], cfg.get("vocab_size", 50304)
    f = int(round(c * cfg.get("mlp_ratio", 4.0)))
    shapes = {"wte": [v, c]}
    if cfg.get("embed_norm", True):
        shapes["embed_norm.weight"] = [c]
    for l in range(cfg["layers"]):
        shapes[f"blocks.{l}.ln1.weight"] = [c]
        shapes[f"blocks.{l}.attn.w_qkvgr"] = [c, 3 * c + 2 * h]
        shapes[f"blocks.{l}.attn.w_o"] = [c, c]
        shapes[f"blocks.{l}.ln2.weight"] = [c]
        shapes[f"blocks.{l}.mlp.w1"] = [c, f]
        shapes[f"blocks.{l}.mlp.w2"] = [f, c]
    shapes["ln_f.weight"] = [c]
    return shapes


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def main():
    ckpt = sys.argv[1]
    state = json.load(open(f"{ckpt}/state.json"))
    config = state["config"]
    want = expected_shapes(config.get("model", config))  # the flat form in checkpoints written before the two sections
    model = load_file(f"{ckpt}/model.safetensors")
    if set(model) != set(want):
        fail(f"model.safetensors: tensors {sorted(set(model) ^ set(want))} differ from the documented names")
    for name, shape in want.items():
        t = model[name]
        if t.dtype != np.float32 or list(t.shape) != shape:
            fail(f"model.safetensors: {name} is {t.dtype} {list(t.shape)}, expected float32 {shape}")
        if not np.isfinite(t).all():
            fail(f"model.safetensors: {name} has non-finite values")
    opt = load_file(f"{ckpt}/optimizer.safetensors")
    for name, shape in want.items():
        for suffix in (".exp_avg", ".exp_avg_sq"):
            if list(opt[name + suffix].shape) != shape:
                fail(f"optimizer.safetensors: {name + suffix} has shape {list(opt[name + suffix].shape)}, expected {shape}")
        if (opt[name + ".exp_avg_sq"] < 0).any():
            fail(f"optimizer.safetensors: {name}.exp_avg_sq has negative values")
    with safe_open(f"{ckpt}/optimizer.safetensors", framework="numpy") as f:
        if int(f.metadata()["step"]) != state["step"]:
            fail(f"optimizer.safetensors: step {f.metadata()['step']} differs from state.json's {state['step']}")
    print(json.dumps({n: {"shape": list(t.shape), "sum": float(t.astype(np.float64).sum())} for n, t in model.items()}))


if __name__ == "__main__":
    main()
