#!/usr/bin/env python3
"""Train LongCrawl's model in PyTorch on a LongCrawl dataset, on CPU or GPU, alone or under torchrun: a trainer to
start from, in the manner of nanoGPT's train.py. The step is `longcrawl train`'s: the same windows per step at the
same global batch (`--batch` rows per rank, as there), AdamW with decay on matrices only, warmup + cosine, global
norm clipping without torch's 1e-6; checkpoints in LongCrawl's format, which `longcrawl eval`, `probe`,
`generate` and `train --init-from` read.

    python3 python/examples/train_torch.py --data out/sample --config data/configs/tiny.json --steps 300 --out runs/torch
    torchrun --standalone --nproc_per_node 2 python/examples/train_torch.py ...   # data parallel: gloo on CPU, NCCL on CUDA
    python3 python/examples/train_torch.py --out runs/torch --resume     # continue from the newest checkpoint

Needs `pip install ./python[torch]` (or PYTHONPATH=python).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from longcrawl import LongCrawlError, PackerCursor
from longcrawl.model import (Config, Transformer, clip_gradients, learning_rate, load_optimizer, load_state, make_optimizer,
                             resolve_checkpoint, save_checkpoint)
from longcrawl.torchdata import TorchBatches


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset folder (from `longcrawl preprocess`)")
    p.add_argument("--config", help="model and training config, data/configs/*.json")
    p.add_argument("--context", type=int, help="tokens per row T (a multiple of the chunk dividing 65536; default: the config's)")
    p.add_argument("--batch", type=int, help="rows per rank and step (default: the config's); the global batch is batch x ranks")
    p.add_argument("--steps", type=int, help="steps of the run, the cosine's end (default: the config's)")
    p.add_argument("--out", required=True, help="run folder: config.json, metrics.jsonl, checkpoints/step-NNNNNN")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda (default when present)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: autocast the projections and MLP (the attention core and head stay float32)")
    p.add_argument("--init-from", help="start from a checkpoint's (or run's newest) weights, fresh optimizer, step 0")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--order", choices=["longcrawl", "sequential"], default="longcrawl")
    p.add_argument("--seed", type=int, default=1, help="data order (and torch's initialization), as train --seed")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per rank")
    p.add_argument("--threads", type=int, help="torch's CPU threads per rank (default: torch's choice)")
    return p.parse_args()


def main() -> None:
    args = parse()
    out = Path(args.out)
    # torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; alone, this is rank 0 of 1.
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if args.device == "cuda" and distributed else args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)

    # The run: fresh (config file, options), or resumed from the newest checkpoint's state.
    existing = sorted((out / "checkpoints").glob("step-*"))
    if args.resume:
        checkpoint = resolve_checkpoint(out)
        state = load_state(checkpoint)
        config = Config.from_json(json.dumps(state["config"]))
        if len(state["cursors"]) != world:
            raise LongCrawlError(f"{checkpoint}: saved on {len(state['cursors'])} ranks, resumed on {world}")
        cursor = PackerCursor.from_json(json.dumps(state["cursors"][rank]))
        step, tokens, elapsed = state["step"], state["tokens"], state["elapsed"]
        data_path, seed, init_from = state["options"]["data"], state["options"]["seed"], state["options"].get("init_from")
        args.save_every, args.keep = state["options"]["save_every"], state["options"]["keep"]
        model = Transformer.from_checkpoint(checkpoint, device=device)
        optimizer = load_optimizer(checkpoint, model)
    else:
        if not args.data or not args.config:
            raise LongCrawlError("give --data and --config (or --resume)")
        if existing:
            raise LongCrawlError(f"{out}: already holds a run (checkpoints/); use --resume to continue it")
        config = Config.load(args.config)
        config.context = args.context or config.context
        config.batch = args.batch or config.batch
        config.steps = args.steps or config.steps
        if config.context % config.chunk:
            raise LongCrawlError(f"--context {config.context} is not a multiple of the chunk {config.chunk} of config '{config.name}'")
        cursor = PackerCursor(args.seed, config.batch, config.context, args.order, rank, world)
        TorchBatches(args.data, "train", cursor=cursor)  # a bad dataset, context or batch fails before anything is written
        step, tokens, elapsed, data_path, seed, init_from = 0, 0, 0.0, args.data, args.seed, args.init_from
        torch.manual_seed(seed)
        model = Transformer(config)
        if init_from:
            source = Transformer.from_checkpoint(init_from)
            if source.config.to_dict()["model"] != config.to_dict()["model"]:
                raise LongCrawlError(f"--init-from {init_from}: config '{source.config.name}' differs from '{config.name}'")
            model.load_state_dict(source.state_dict())
        model.to(device)
        optimizer = make_optimizer(model)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
            (out / "metrics.jsonl").write_text("")

    data = TorchBatches(data_path, "train", cursor=cursor)
    batches = iter(data.loader(num_workers=args.workers, pin_memory=device.type == "cuda"))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bfloat16" else contextlib.nullcontext()
    params = list(model.parameters())
    metrics = open(out / "metrics.jsonl", "a") if rank == 0 else None
    if metrics and args.resume:  # steps after the checkpoint were never saved: they are taken again
        lines = [line for line in (out / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= step]
        metrics.truncate(0)
        metrics.write("".join(line + "\n" for line in lines))

    while step < config.steps:
        t0 = time.perf_counter()
        batch = next(batches)
        inputs, targets, mask = (batch[k].to(device, non_blocking=True) for k in ("inputs", "targets", "mask"))
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = ddp(inputs, targets, mask)
        loss.backward()  # DDP averages the gradients over ranks, as `longcrawl train` does
        norm = clip_gradients(params, config.grad_clip)
        optimizer.step()
        step += 1
        loss = loss.detach()
        rows = [(batch["windows"].tolist(), batch["offsets"].tolist())]
        if distributed:
            dist.all_reduce(loss)
            loss /= world
            rows = [None] * world
            dist.all_gather_object(rows, (batch["windows"].tolist(), batch["offsets"].tolist()))
        seconds = time.perf_counter() - t0
        elapsed += seconds
        tokens += inputs.numel() * world
        if metrics:
            # Row j of rank r is row j x ranks + r of the global batch, as in `longcrawl train`'s metrics.
            line = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": norm, "tokens_per_s": inputs.numel() * world / seconds,
                    "windows": [w[j] for j in range(len(rows[0][0])) for w, _ in rows],
                    "offsets": [o[j] for j in range(len(rows[0][1])) for _, o in rows]}
            metrics.write(json.dumps(line) + "\n")
            metrics.flush()
            print(f"step {step}/{config.steps} loss {line['loss']:.4f} lr {lr:.2e} | {line['tokens_per_s']:.0f} tokens/s", flush=True)
        if step % args.save_every == 0 or step == config.steps:
            if rank == 0:
                cursors = [replace(data.cursor, rank=r) for r in range(world)]
                save_checkpoint(out / "checkpoints" / f"step-{step:06d}", model, optimizer, step, data_path, cursors, seed,
                                tokens=tokens, elapsed=elapsed, init_from=init_from, save_every=args.save_every, keep=args.keep)
                for old in sorted((out / "checkpoints").glob("step-*"))[:-args.keep]:
                    shutil.rmtree(old)
            if distributed:
                dist.barrier()
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except (LongCrawlError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
