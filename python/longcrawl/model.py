"""LongCrawl's sympow transformer in PyTorch: the same function, parameters, training step and checkpoint format as
the Swift model (docs/MODEL.md; Sources/Model, Sources/Training), on any device, with autograd for the backward.

    from longcrawl.model import Transformer, make_optimizer, learning_rate, clip_gradients, save_checkpoint
    model = Transformer.from_checkpoint("runs/tiny")          # a run folder (its newest checkpoint) or a checkpoint
    loss, losses = model(inputs, targets, mask)              # mean masked cross-entropy, and per position [B, T]
    save_checkpoint("runs/torch/checkpoints/step-000100", model, optimizer, step=100, ...)   # `longcrawl eval` reads it

The parameter names and shapes are those of `model.safetensors`, every matrix used as `x @ W`. Everything runs in
plain torch ops: Manifest's optional `retention` kernels are not used (not installed here, and untested on a GPU).
Under `torch.autocast(..., dtype=torch.bfloat16)` the projections and MLP run in bfloat16; the attention core, the
cumulative gates and rotary angles (float64) and the tied head stay in float32 or wider.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dataset import LongCrawlError, _text_encoding
from .packer import PackerCursor

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

    _MODEL = ("name", "vocab_size", "layers", "d_model", "heads", "power", "chunk", "attention", "mlp_ratio", "embed_norm")

    @classmethod
    def from_json(cls, text: str) -> Config:
        known, data = {f.name for f in fields(cls)}, json.loads(text)
        if "model" in data or "train" in data:  # the two sections; a file of the earlier flat form is one object already
            data = {**data["model"], **data["train"]}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> Config:
        """A config file, `data/configs/*.json`."""
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise LongCrawlError(f"{path}: not a LongCrawl config ({e})") from None

    def to_dict(self) -> dict:
        """The two sections with every key, as Swift's RunConfig encodes them (state.json's `config`)."""
        values = asdict(self)
        return {"model": {k: values[k] for k in self._MODEL}, "train": {k: v for k, v in values.items() if k not in self._MODEL}}

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
        self.rates = [2 * math.pi / MAX_DOCUMENT_LENGTH ** (2 * m / d) for m in range(d // 2)]  # float64 at use
        self.phi = SymmetricPower(d, config.power) if self.kind != "softmax" else None

    def rotate(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Rotates the pairs (2m, 2m + 1) of x [B, H, T, d] by angles [B or 1, H or 1, T, d/2]."""
        cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.heads
        proj = (x @ self.w_qkvgr).to(torch.promote_types(x.dtype, torch.float32))  # the core in float32 or wider
        q, k, v = (proj[..., i * c:(i + 1) * c].view(b, t, h, c // h).transpose(1, 2) for i in range(3))
        gate, rate = proj[..., 3 * c:3 * c + h].transpose(1, 2), proj[..., 3 * c + h:].transpose(1, 2)  # [B, H, T]
        # The cumulative sums G and B in float64, as the Swift code keeps them: over 65,536 steps float32 drifts.
        gated = self.kind in ("sympow+gating", "conformal-sympow")
        f64 = dict(dtype=torch.float64, device=x.device)
        G = F.logsigmoid(gate.double() + GATE_BIAS).cumsum(-1) if gated else torch.zeros(b, h, t, **f64)
        if self.kind == "conformal-sympow":
            # Learned rotary: angle (B_t - 1) w_m with B_t = sum_{s<=t} (1 + tanh r_s); exactly t w_m at zero init.
            positions = (1 + torch.tanh(rate.double())).cumsum(-1) - 1
        else:
            positions = torch.arange(t, **f64).expand(1, 1, t)
        angles = positions[..., None] * torch.tensor(self.rates, **f64)
        q, k = self.rotate(q, angles), self.rotate(k, angles)
        with torch.autocast(x.device.type, enabled=False):
            y = softmax_attention(q, k, v) if self.phi is None else sympow_attention(q, k, v, G, self.phi, self.chunk)
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
        losses = torch.empty(len(x), dtype=x.dtype, device=x.device)
        dx, dwte = torch.zeros_like(x), torch.zeros_like(wte)
        for r in range(0, len(x), block):
            rows = slice(r, r + block)
            logits = x[rows] @ wte.T
            lse = torch.logsumexp(logits, -1)
            losses[rows] = lse - logits.gather(-1, targets[rows, None]).squeeze(-1)
            if training:
                # dlogits = (softmax - onehot) * mask / count, written over the logits.
                dlogits = logits.sub_(lse[:, None]).exp_()
                dlogits[torch.arange(len(dlogits), device=x.device), targets[rows]] -= 1
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
    """GPT-2-style pre-norm transformer with sympow attention (docs/MODEL.md), LongCrawl's parameter names."""

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

    @classmethod
    def from_checkpoint(cls, folder: Union[str, os.PathLike], device: Union[str, torch.device, None] = None,
                        dtype: torch.dtype = torch.float32) -> Transformer:
        """The model of a LongCrawl checkpoint folder, or of a run folder's newest checkpoint: the config from
        `state.json`, the weights from `model.safetensors` (each file's SHA-256 checked against the state)."""
        return _load_model(cls, folder, device, dtype)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean masked cross-entropy of `targets` given `tokens` ([B, T] each), and the loss at every position [B, T]."""
        x = self.wte[tokens]
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        dtype = torch.promote_types(self.wte.dtype, torch.float32)  # the head in float32 or wider, autocast or not
        with torch.autocast(x.device.type, enabled=False):
            loss, losses = _FusedHeadLoss.apply(x.flatten(0, 1).to(dtype), self.wte.to(dtype), targets.flatten(),
                                                mask.flatten().to(dtype), torch.is_grad_enabled())
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
# Checkpoints: LongCrawl's format (Sources/Training/Checkpoint.swift), so `longcrawl eval`, `probe`, `generate` and
# `train --init-from` read what torch saved, and torch reads what Swift saved.


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _swift_json(value: Any) -> str:
    """`value` as Swift's `JSONEncoder` with sorted keys writes it (compact, `/` escaped, a whole Double without
    `.0`): the bytes whose SHA-256 a checkpoint's `state.json` carries."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_swift_json(str(k))}:{_swift_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_swift_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("/", "\\/")
    return str(int(value))


def resolve_checkpoint(path: Union[str, os.PathLike]) -> Path:
    """A checkpoint folder as given, or the newest `checkpoints/step-*` of a run folder (as the CLI resolves it)."""
    path = Path(path)
    if (path / "state.json").exists():
        return path
    steps = sorted(p for p in (path / "checkpoints").glob("step-*") if not p.name.endswith(".tmp"))
    if not steps:
        raise LongCrawlError(f"{path}: no checkpoint (no state.json here or under checkpoints/)")
    return steps[-1]


def load_state(folder: Union[str, os.PathLike]) -> dict:
    """A checkpoint's `state.json`, its own digest checked as Swift checks it."""
    path = Path(folder) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LongCrawlError(f"{path}: not a checkpoint state ({e})") from None
    saved = state.get("sha256")
    if saved is not None and saved != hashlib.sha256(_swift_json({k: v for k, v in state.items() if k != "sha256"}).encode()).hexdigest():
        raise LongCrawlError(f"{path}: checksum mismatch (a value was changed after it was written)")
    return state


def _tensors(folder: Path, name: str, state: dict) -> Path:
    path = folder / name
    if not path.exists():
        raise LongCrawlError(f"{path}: missing from the checkpoint")
    expected = (state.get("files") or {}).get(name)
    if expected is not None and _sha256(path) != expected:
        raise LongCrawlError(f"{path}: SHA-256 differs from the one in state.json (the file is damaged)")
    return path


def load_optimizer(folder: Union[str, os.PathLike], model: Transformer) -> torch.optim.AdamW:
    """AdamW with the moments and step count of the checkpoint's optimizer.safetensors (for resuming)."""
    from safetensors import safe_open

    folder = Path(folder)
    path = _tensors(folder, "optimizer.safetensors", load_state(folder))
    optimizer = make_optimizer(model)
    with safe_open(str(path), "pt") as f:
        step = int(f.metadata()["step"])
        for name, p in model.named_parameters():
            optimizer.state[p] = {"step": torch.tensor(float(step)),
                                  "exp_avg": f.get_tensor(f"{name}.exp_avg").to(p),
                                  "exp_avg_sq": f.get_tensor(f"{name}.exp_avg_sq").to(p)}
    return optimizer


def _load_model(cls, folder: Union[str, os.PathLike], device: Union[str, torch.device, None], dtype: torch.dtype) -> Transformer:
    from safetensors.torch import load_file

    folder = resolve_checkpoint(folder)
    state = load_state(folder)
    path = _tensors(folder, "model.safetensors", state)
    model = cls(Config.from_json(json.dumps(state["config"])))
    tensors = load_file(str(path))
    missing = set(dict(model.named_parameters())) ^ set(tensors)
    if missing:
        raise LongCrawlError(f"{path}: tensor {sorted(missing)[0]} is not in both the file and config '{model.config.name}'")
    model.load_state_dict(tensors)
    return model.to(device=device, dtype=dtype)


#: The `state.json` version `save_checkpoint` writes (Swift's `TrainState.currentVersion`).
CHECKPOINT_VERSION = 2


def save_checkpoint(folder: Union[str, os.PathLike], model: Transformer, optimizer: Optional[torch.optim.AdamW], step: int,
                    data: Union[str, os.PathLike], cursors: Sequence[PackerCursor], seed: int, tokens: int = 0,
                    elapsed: float = 0.0, init_from: Optional[str] = None, save_every: int = 100, keep: int = 3) -> Path:
    """Writes a checkpoint `longcrawl` reads: `model.safetensors` (float32, Swift's names), `optimizer.safetensors`
    (AdamW's `<name>.exp_avg`, `<name>.exp_avg_sq`, the step count in the metadata; left out when `optimizer` is
    None) and `state.json` (config, options, every rank's data cursor in rank order, the files' SHA-256 and its own).
    Written into a hidden folder beside `folder`, then renamed into place."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    params = {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters()}
    save_file(params, str(tmp / "model.safetensors"), metadata={"format": "pt", "config": model.config.name, "step": str(step)})
    names = ["model.safetensors"]
    if optimizer is not None:
        moments, count = {}, 0
        for n, p in model.named_parameters():
            s = optimizer.state.get(p, {})
            moments[f"{n}.exp_avg"] = s["exp_avg"].float().cpu().contiguous() if s else torch.zeros_like(params[n])
            moments[f"{n}.exp_avg_sq"] = s["exp_avg_sq"].float().cpu().contiguous() if s else torch.zeros_like(params[n])
            count = int(s["step"]) if s else count
        save_file(moments, str(tmp / "optimizer.safetensors"), metadata={"format": "pt", "step": str(count)})
        names.append("optimizer.safetensors")
    first = cursors[0]
    options = {"data": str(Path(data).resolve()), "order": first.order, "accumulation": 1, "keep": keep, "seed": seed,
               "recompute": False, "save_every": save_every}
    if init_from is not None:
        options["init_from"] = str(Path(init_from).resolve())
    index = Path(data) / "index.json"
    if index.exists() and _text_encoding(json.loads(index.read_text())) == "json":
        options["text_encoding"] = "json"  # so `longcrawl generate` escapes its prompt and unescapes its output
    state = {"version": CHECKPOINT_VERSION, "step": step, "config": model.config.to_dict(), "options": options,
             "cursors": [json.loads(c.to_json()) for c in cursors], "rng": seed, "tokens": tokens, "elapsed": float(elapsed),
             "files": {n: _sha256(tmp / n) for n in names}}
    state["sha256"] = hashlib.sha256(_swift_json(state).encode()).hexdigest()
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
