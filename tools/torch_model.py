#!/usr/bin/env python3
"""Checks and times `longcrawl.model` (python/longcrawl/model.py), the model in PyTorch, against the Swift one.

    torch_model.py check --checkpoint CKPT --windows FILE   # per-position losses against `longcrawl eval`, and
                                                            # one AdamW step against the run's next checkpoint
    torch_model.py bench --config data/configs/small.json --context 4096 --batch 4 --steps 3
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from longcrawl.model import Config, Transformer, load_optimizer, make_optimizer, train_step  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Commands


def read_rows(path: Path) -> torch.Tensor:
    """The /tokens rows [N, L] of a windows file from `longcrawl sample`."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the zstd filter)

    with h5py.File(path, "r") as f:
        return torch.from_numpy(f["tokens"][...].astype("int64"))


def check_eval(args: argparse.Namespace) -> dict:
    """Per-position mean losses of the windows, torch (float64) against `longcrawl eval` (float32)."""
    model = Transformer.from_checkpoint(args.checkpoint, dtype=torch.float64)
    rows = read_rows(args.windows)
    # Rows of T + 1 tokens: T inputs and T targets, every target counted (as Evaluator.losses does).
    tokens, targets = rows[:, :-1], rows[:, 1:]
    if model.config.attention == "softmax" and tokens.shape[1] > model.config.context:
        # eval runs softmax in independent segments of its training context (its attention form is quadratic).
        tokens, targets = (x.reshape(-1, model.config.context) for x in (tokens, targets))
    with torch.no_grad():
        _, losses = model(tokens, targets, torch.ones_like(tokens, dtype=torch.float64))
    ours = losses.reshape(len(rows), -1).mean(0)
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([args.longcrawl, "eval", "--checkpoint", str(args.checkpoint), "--windows", str(args.windows),
                        "--out", out], check=True, capture_output=True)
        lines = (Path(out) / "positions.csv").read_text().split("\n")[1:]
        theirs = torch.tensor([float(line.split(",")[1]) for line in lines if line], dtype=torch.float64)
    diff = (ours - theirs).abs()
    return {"rows": len(rows), "positions": len(ours), "mean_loss": ours.mean().item(),
            "max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item()}


def check_step(folder: Path) -> dict | None:
    """One training step from checkpoint `folder` on the batch its cursor gives next (the Python packer gives the
    Swift batches), against the run's next checkpoint and metrics line; None without a next checkpoint."""
    state = json.loads((folder / "state.json").read_text())
    step = state["step"]
    following = folder.parent / f"step-{step + 1:06d}"
    if not (following / "model.safetensors").exists() or state["options"]["accumulation"] != 1 or len(state["cursors"]) != 1:
        return None
    import longcrawl

    cursor = state["cursors"][0]
    packer = longcrawl.BatchPacker(longcrawl.Dataset(state["options"]["data"]).split("train"),
                                   cursor=longcrawl.PackerCursor.from_json(json.dumps(cursor)))
    batch = next(packer)
    model = Transformer.from_checkpoint(folder, dtype=torch.float64)
    optimizer = load_optimizer(folder, model)
    loss, norm, lr = train_step(model, optimizer, step, torch.from_numpy(batch.inputs).long(),
                                torch.from_numpy(batch.targets).long(), torch.from_numpy(batch.mask).double())
    metrics = [json.loads(line) for line in (folder.parent.parent / "metrics.jsonl").read_text().splitlines()]
    swift = next(m for m in metrics if m["step"] == step + 1)
    after = Transformer.from_checkpoint(following, dtype=torch.float64)
    ours, theirs = dict(model.named_parameters()), dict(after.named_parameters())
    weight_diff = max((ours[n] - theirs[n]).abs().max().item() for n in ours)
    update = max((theirs[n] - p).abs().max().item() for n, p in Transformer.from_checkpoint(folder, dtype=torch.float64).named_parameters())
    return {"step": step + 1, "windows": batch.windows, "loss": loss, "loss_longcrawl": swift["loss"], "loss_diff": abs(loss - swift["loss"]),
            "grad_norm": norm, "grad_norm_longcrawl": swift["grad_norm"], "lr": lr, "lr_longcrawl": swift["lr"],
            "max_weight_diff": weight_diff, "max_update": update}


def command_check(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    result = {"checkpoint": str(args.checkpoint), "attention": Transformer.from_checkpoint(args.checkpoint).config.attention,
              "eval": check_eval(args), "train_step": check_step(args.checkpoint)}
    print(json.dumps(result))


def command_bench(args: argparse.Namespace) -> None:
    """Tokens/s of whole training steps (forward, backward, clipping, AdamW) on random tokens, first step untimed."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Config.from_json(args.config.read_text())
    config.context = args.context
    if args.attention:
        config.attention = args.attention
    model = Transformer(config)
    optimizer = make_optimizer(model)
    shape = (args.batch, args.context)
    seconds = []
    for step in range(args.steps + 1):
        tokens = torch.randint(0, 50_257, shape)
        targets = torch.randint(0, 50_257, shape)
        start = time.perf_counter()
        train_step(model, optimizer, step, tokens, targets, torch.ones(shape))
        seconds.append(time.perf_counter() - start)
    measured = seconds[1:]
    print(json.dumps({"impl": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(), "config": config.name,
                      "attention": config.attention, "context": args.context, "batch": args.batch, "steps": len(measured),
                      "step_s": sum(measured) / len(measured), "tokens_per_s": args.batch * args.context * len(measured) / sum(measured),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="same function as LongCrawl: eval losses and one training step")
    check.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder RUN/checkpoints/step-NNNNNN")
    check.add_argument("--windows", type=Path, required=True, help="windows file from `longcrawl sample`")
    check.add_argument("--longcrawl", default=".build/release/longcrawl", help="the longcrawl binary")
    check.add_argument("--threads", type=int, default=2)
    check.set_defaults(run=command_check)
    bench = commands.add_parser("bench", help="tokens/s of full training steps")
    bench.add_argument("--config", type=Path, default=Path("data/configs/small.json"))
    bench.add_argument("--attention", choices=["softmax", "sympow", "sympow+gating", "conformal-sympow"])
    bench.add_argument("--context", type=int, default=4096)
    bench.add_argument("--batch", type=int, default=4)
    bench.add_argument("--steps", type=int, default=3, help="measured steps, after one untimed warm-up step")
    bench.add_argument("--threads", type=int, default=2)
    bench.set_defaults(run=command_bench)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
