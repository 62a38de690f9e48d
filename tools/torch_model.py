#!/usr/bin/env python3
"""LongCrawl's conformal-sympow transformer in PyTorch: the same function, parameters and training step as the
Swift model (MODEL.md; Sources/Model, Sources/Training), with autograd for the backward.

    torch_model.py check --checkpoint CKPT --windows FILE   # per-position losses against `longcrawl eval`, and
                                                            # one AdamW step against the run's next checkpoint
    torch_model.py bench --config data/configs/small.json --context 4096 --batch 4 --steps 3

A LongCrawl `model.safetensors` loads directly: the parameter names and shapes are the Swift ones, and every
matrix is used as `x @ W` as there.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

GATE_BIAS = 6.906768  # logsigmoid(6.906768) ~= log(0.999): gates start almost open
MAX_DOCUMENT_LENGTH = 65_536  # N of the rotary rates 2 pi / N^(2m/d), fixed at training and evaluation alike
EPS = 1e-6  # y = n / (l + eps), the attention normalizer's epsilon


@dataclass
class Config:
    """A config, `data/configs/*.json` (snake_case keys): its `model` and `train` sections in one object, with the
    defaults of Swift's ModelConfig and TrainingConfig."""
    name: str
    layers: int
    d_model: int
    heads: int
    power: int
    chunk: int
    attention: str
    context: int
    vocab_size: int = 50_304
    mlp_ratio: float = 4.0
    embed_norm: bool = True
    batch: int = 8
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 2000
    steps: int = 10_000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0

    @classmethod
    def from_json(cls, text: str) -> Config:
        known, data = {f.name for f in fields(cls)}, json.loads(text)
        if "model" in data or "train" in data:  # the two sections; a file of the earlier flat form is one object already
            data = {**data["model"], **data["train"]}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def hidden(self) -> int:
        return round(self.d_model * self.mlp_ratio)


# ---------------------------------------------------------------------------------------------------------------
# Symmetric power embedding


class SymmetricPower(nn.Module):
    """phi_p: one entry per multiset {i_1 <= ... <= i_p} of the d coordinates, sqrt(multinomial count) times the
    product of those coordinates, so that phi(q) . phi(k) = (q . k)^p; D = C(d + p - 1, p) entries, enumerated in
    the order of SymmetricPower.swift."""

    def __init__(self, d: int, p: int) -> None:
        super().__init__()
        multisets = list(itertools.combinations_with_replacement(range(d), p))
        weights = [math.sqrt(math.factorial(p) / math.prod(math.factorial(m.count(i)) for i in set(m))) for m in multisets]
        self.register_buffer("index", torch.tensor(multisets).T.contiguous(), persistent=False)  # [p, D]
        self.register_buffer("weight", torch.tensor(weights, dtype=torch.float64), persistent=False)
        self.size = len(multisets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SymmetricPowerFunction.apply(x, self.index, self.weight.to(x.dtype))


class _SymmetricPowerFunction(torch.autograd.Function):
    """phi_p with a hand-written backward for one reason, memory: autograd would keep the p gathered [N, D]
    factors of every product (p times phi's own size, per query and key, per layer); this keeps only x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, index, weight)
        out = weight * x[..., index[0]]
        for i in index[1:]:
            out *= x[..., i]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, index, weight = ctx.saved_tensors
        scaled = grad * weight
        dx = torch.zeros_like(x)
        for k in range(len(index)):  # product rule: d/dx_{i_k} is the product of the other p - 1 factors
            term = scaled.clone()
            for l, i in enumerate(index):
                if l != k:
                    term *= x[..., i]
            dx.index_add_(-1, index[k], term)
        return dx, None, None


# ---------------------------------------------------------------------------------------------------------------
# Attention cores: (qr, kr, v [B, H, T, d], G [B, H, T] cumulative log-gate in float64) -> y [B, H, T, d]


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal exp(qr . kr / sqrt(d)) attention with the same eps in the normalizer as the sympow forms."""
    t, d = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, -math.inf)
    m = scores.amax(-1, keepdim=True).detach()  # any per-row constant gives the same y: no gradient through it
    a = torch.exp(scores - m)
    return (a @ v) / (a.sum(-1, keepdim=True) + EPS * torch.exp(-m))


def intra_chunk(q: torch.Tensor, k: torch.Tensor, G: torch.Tensor, p: int) -> torch.Tensor:
    """a_ij = exp(G_i - G_j) (qr_i . kr_j / sqrt(d))^p for j <= i, 0 above: [..., c, c]."""
    c, d = q.shape[-2], q.shape[-1]
    u = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    discount = torch.exp(G[..., :, None] - G[..., None, :]).to(q.dtype)
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    return (u.pow(p) * discount).masked_fill(~causal, 0)


def sympow_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, G: torch.Tensor, phi: SymmetricPower,
                     chunk: int) -> torch.Tensor:
    """Symmetric power attention y_i = sum_j a_ij v_j / (sum_j a_ij + eps), chunked as AttentionForms.swift does:
    within a chunk the attention form; across chunks a state S = sum_j exp(G_end - G_j) phi(kr_j) [v_j, 1]^T of
    shape [D, d + 1], the gate discounts folded into the keys and queries because (a x . y)^p = a^p (x . y)^p.
    T <= chunk is the attention form alone."""
    b, h, t, d = q.shape
    p = len(phi.index)
    ones = torch.ones_like(v[..., :1])
    v1 = torch.cat([v, ones], -1)  # the last column accumulates the normalizer
    if t <= chunk:
        out = intra_chunk(q, k, G, p) @ v1
        return out[..., :d] / (out[..., d:] + EPS)
    n, c = t // chunk, chunk
    q, k, v1, G = (x.reshape(b, h, n, c, *x.shape[3:]) for x in (q, k, v1, G))
    g_end = G[..., -1]  # [B, H, n]
    g_prev = F.pad(g_end[..., :-1], (1, 0))  # G before each chunk (0 before the first)
    fold_q = torch.exp((G - g_prev[..., None]) / p).to(q.dtype)[..., None]
    fold_k = torch.exp((g_end[..., None] - G) / p).to(q.dtype)[..., None]
    phi_q = phi(q * fold_q / math.sqrt(d))  # [B, H, n, c, D]
    phi_k = phi(k * fold_k)
    updates = phi_k.transpose(-1, -2) @ v1  # each chunk's contribution to the state: [B, H, n, D, d + 1]
    decay = torch.exp(g_end - g_prev).to(q.dtype)[..., None, None]
    states, state = [], torch.zeros_like(updates[:, :, 0])
    for i in range(n):  # the state before chunk i
        states.append(state)
        state = decay[:, :, i] * state + updates[:, :, i]
    out = phi_q @ torch.stack(states, 2) + intra_chunk(q, k, G, p) @ v1
    return (out[..., :d] / (out[..., d:] + EPS)).reshape(b, h, t, d)


# ---------------------------------------------------------------------------------------------------------------
# The transformer


class LayerNorm(nn.Module):
    """LayerNorm without bias, eps 1e-5."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, None, 1e-5)


class Attention(nn.Module):
    """Fused projection x @ w_qkvgr -> q, k, v, then per head a gate and a rotation-rate pre-activation; gate,
    rotary (fixed or learned), one of the four attention variants, output projection. No biases."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        c, h, d = config.d_model, config.heads, config.head_dim
        self.heads, self.chunk, self.kind = h, config.chunk, config.attention
        self.w_qkvgr = nn.Parameter(torch.empty(c, 3 * c + 2 * h))
        self.w_o = nn.Parameter(torch.empty(c, c))
        rates = [2 * math.pi / MAX_DOCUMENT_LENGTH ** (2 * m / d) for m in range(d // 2)]
        self.register_buffer("rates", torch.tensor(rates, dtype=torch.float64), persistent=False)
        self.phi = SymmetricPower(d, config.power) if self.kind != "softmax" else None

    def rotate(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Rotates the pairs (2m, 2m + 1) of x [B, H, T, d] by angles [B or 1, H or 1, T, d/2]."""
        cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.heads
        proj = x @ self.w_qkvgr
        q, k, v = (proj[..., i * c:(i + 1) * c].view(b, t, h, c // h).transpose(1, 2) for i in range(3))
        gate, rate = proj[..., 3 * c:3 * c + h].transpose(1, 2), proj[..., 3 * c + h:].transpose(1, 2)  # [B, H, T]
        # The cumulative sums G and B in float64, as the Swift code keeps them: over 65,536 steps float32 drifts.
        gated = self.kind in ("sympow+gating", "conformal-sympow")
        G = F.logsigmoid(gate.double() + GATE_BIAS).cumsum(-1) if gated else torch.zeros(b, h, t, dtype=torch.float64)
        if self.kind == "conformal-sympow":
            # Learned rotary: angle (B_t - 1) w_m with B_t = sum_{s<=t} (1 + tanh r_s); exactly t w_m at zero init.
            positions = (1 + torch.tanh(rate.double())).cumsum(-1) - 1
        else:
            positions = torch.arange(t, dtype=torch.float64).expand(1, 1, t)
        angles = positions[..., None] * self.rates
        q, k = self.rotate(q, angles), self.rotate(k, angles)
        if self.phi is None:
            y = softmax_attention(q, k, v)
        else:
            y = sympow_attention(q, k, v, G, self.phi, self.chunk)
        return y.transpose(1, 2).reshape(b, t, c) @ self.w_o


class MLP(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(config.d_model, config.hidden))
        self.w2 = nn.Parameter(torch.empty(config.hidden, config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x @ self.w1, approximate="tanh") @ self.w2


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.ln1, self.attn = LayerNorm(config.d_model), Attention(config)
        self.ln2, self.mlp = LayerNorm(config.d_model), MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _FusedHeadLoss(torch.autograd.Function):
    """Tied head and masked cross-entropy, blocked as LanguageModelHead does: the logits of `block` rows at a
    time, loss and gradients (dx, dwte) computed together in the forward, so memory stays block x V instead of
    N x V (16,384 x 50,304 float32 logits would be 3.3 GB, three times over with softmax and gradient)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, wte: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, training: bool, block: int = 512):
        count = mask.sum().clamp(min=1)
        losses = torch.empty(len(x), dtype=x.dtype)
        dx, dwte = torch.zeros_like(x), torch.zeros_like(wte)
        for r in range(0, len(x), block):
            rows = slice(r, r + block)
            logits = x[rows] @ wte.T
            lse = torch.logsumexp(logits, -1)
            losses[rows] = lse - logits.gather(-1, targets[rows, None]).squeeze(-1)
            if training:
                # dlogits = (softmax - onehot) * mask / count, written over the logits.
                dlogits = logits.sub_(lse[:, None]).exp_()
                dlogits[torch.arange(len(dlogits)), targets[rows]] -= 1
                dlogits *= (mask[rows] / count)[:, None]
                dx[rows] = dlogits @ wte
                dwte.addmm_(dlogits.T, x[rows])
        ctx.save_for_backward(dx, dwte)
        ctx.mark_non_differentiable(losses)
        return (losses * mask).sum() / count, losses

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_losses: torch.Tensor):
        dx, dwte = ctx.saved_tensors
        return dx * grad_loss, dwte * grad_loss, None, None, None, None


class Transformer(nn.Module):
    """GPT-2-style pre-norm transformer with sympow attention (MODEL.md section 5), LongCrawl's parameter names."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Parameter(torch.empty(config.vocab_size, config.d_model))
        self.embed_norm = LayerNorm(config.d_model) if config.embed_norm else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = LayerNorm(config.d_model)
        self.initialize()

    def initialize(self) -> None:
        """normal(0, 0.02), residual output projections normal(0, 0.02 / sqrt(2 L)), rotation-rate columns 0."""
        c, h = self.config.d_model, self.config.heads
        residual = 0.02 / math.sqrt(2 * self.config.layers)
        nn.init.normal_(self.wte, std=0.02)
        for block in self.blocks:
            nn.init.normal_(block.attn.w_qkvgr, std=0.02)
            with torch.no_grad():
                block.attn.w_qkvgr[:, 3 * c + h:] = 0
            nn.init.normal_(block.attn.w_o, std=residual)
            nn.init.normal_(block.mlp.w1, std=0.02)
            nn.init.normal_(block.mlp.w2, std=residual)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean masked cross-entropy of `targets` given `tokens` ([B, T] each), and the loss at every position [B, T]."""
        x = self.wte[tokens]
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        loss, losses = _FusedHeadLoss.apply(x.flatten(0, 1), self.wte, targets.flatten(), mask.flatten().to(x.dtype),
                                            torch.is_grad_enabled())
        return loss, losses.view_as(tokens)


# ---------------------------------------------------------------------------------------------------------------
# Training step: AdamW, clipping and schedule as Optimizer.swift


def learning_rate(step: int, config: Config) -> float:
    """Linear warmup to lr over warmup_steps, then cosine to min_lr at `steps` (and min_lr after)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if step >= config.steps:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: Transformer) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only, eps 1e-8 and bias correction, as Optimizer.swift."""
    c = model.config
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() == 2], "weight_decay": c.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=1e-8)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> float:
    """Scales the gradients to global L2 norm max_norm if above it (no 1e-6 in the scale, unlike torch's
    clip_grad_norm_); returns the norm before clipping."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params])).item()
    if math.isfinite(norm) and norm > max_norm:
        torch._foreach_mul_([p.grad for p in params], max_norm / norm)
    return norm


def train_step(model: Transformer, optimizer: torch.optim.AdamW, step: int, tokens: torch.Tensor, targets: torch.Tensor,
               mask: torch.Tensor) -> tuple[float, float, float]:
    """One optimizer step at schedule step `step` (0-based); returns loss, gradient norm before clipping and lr."""
    lr = learning_rate(step, model.config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss, _ = model(tokens, targets, mask)
    loss.backward()
    norm = clip_gradients(list(model.parameters()), model.config.grad_clip)
    optimizer.step()
    return loss.item(), norm, lr


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(folder: Path, dtype: torch.dtype) -> Transformer:
    """A LongCrawl checkpoint folder: model.safetensors, and the config from state.json."""
    from safetensors.torch import load_file

    config = Config.from_json(json.dumps(json.loads((folder / "state.json").read_text())["config"]))
    tensors = load_file(folder / "model.safetensors")
    model = Transformer(config).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()})
    return model


def load_optimizer(folder: Path, model: Transformer) -> torch.optim.AdamW:
    """AdamW with the moments and step count of the checkpoint's optimizer.safetensors."""
    from safetensors import safe_open

    optimizer = make_optimizer(model)
    with safe_open(folder / "optimizer.safetensors", "pt") as f:
        step = int(f.metadata()["step"])
        for name, p in model.named_parameters():
            optimizer.state[p] = {"step": torch.tensor(float(step)),
                                  "exp_avg": f.get_tensor(f"{name}.exp_avg").to(p.dtype),
                                  "exp_avg_sq": f.get_tensor(f"{name}.exp_avg_sq").to(p.dtype)}
    return optimizer


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
    model = load_checkpoint(args.checkpoint, torch.float64)
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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    import longcrawl

    cursor = state["cursors"][0]
    packer = longcrawl.BatchPacker(longcrawl.Dataset(state["options"]["data"]).split("train"),
                                   cursor=longcrawl.PackerCursor.from_json(json.dumps(cursor)))
    batch = next(packer)
    model = load_checkpoint(folder, torch.float64)
    optimizer = load_optimizer(folder, model)
    loss, norm, lr = train_step(model, optimizer, step, torch.from_numpy(batch.inputs).long(),
                                torch.from_numpy(batch.targets).long(), torch.from_numpy(batch.mask).double())
    metrics = [json.loads(line) for line in (folder.parent.parent / "metrics.jsonl").read_text().splitlines()]
    swift = next(m for m in metrics if m["step"] == step + 1)
    after = load_checkpoint(following, torch.float64)
    ours, theirs = dict(model.named_parameters()), dict(after.named_parameters())
    weight_diff = max((ours[n] - theirs[n]).abs().max().item() for n in ours)
    update = max((theirs[n] - p).abs().max().item() for n, p in load_checkpoint(folder, torch.float64).named_parameters())
    return {"step": step + 1, "windows": batch.windows, "loss": loss, "loss_longcrawl": swift["loss"], "loss_diff": abs(loss - swift["loss"]),
            "grad_norm": norm, "grad_norm_longcrawl": swift["grad_norm"], "lr": lr, "lr_longcrawl": swift["lr"],
            "max_weight_diff": weight_diff, "max_update": update}


def command_check(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    result = {"checkpoint": str(args.checkpoint), "attention": load_checkpoint(args.checkpoint, torch.float32).config.attention,
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
