"""Plots for LongCrawl runs (matplotlib): ``python -m longcrawl.plot KIND PATH... --out FILE.png``.

  python -m longcrawl.plot train RUN [RUN...] --out curves.png     # loss (and learning rate) by step from RUN/metrics.jsonl, held-out points from RUN/eval.jsonl
  python -m longcrawl.plot eval RESULT [RESULT...] --out pos.png   # mean loss by token position from RESULT/result.json, log-scale x, SE bands
  python -m longcrawl.plot probe OUT [OUT...] --out probe.png      # recall probe: copy gain by distance from OUT/probe.json, SE bars
  python -m longcrawl.plot funnel DATASET [DATASET...] --out funnel.png  # preprocessing: records left after each stage, and documents
                                                  # read and kept by UTF-8 length, from DATASET/index.json

Several runs or results go on one figure, labelled by folder name, for comparison.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def label(path):
    return os.path.basename(os.path.normpath(path))


def plot_train(runs, out):
    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for run in runs:
        rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl")) if line.strip()]
        if not rows:
            sys.exit(f"{run}/metrics.jsonl: no steps")
        steps = np.array([r["step"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        (line,) = ax.plot(steps, loss, alpha=0.3, linewidth=0.8)
        k = max(1, len(loss) // 50)
        if k > 1:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color=line.get_color(), label=f"{label(run)} (mean of {k})")
        else:
            line.set_alpha(1)
            line.set_label(label(run))
        lr_ax.plot(steps, [r["lr"] for r in rows], color=line.get_color())
        held = os.path.join(run, "eval.jsonl")
        if os.path.exists(held):
            ev = [json.loads(line) for line in open(held) if line.strip()]
            se = [e["loss"].get("se") or 0 for e in ev]
            ax.errorbar([e["step"] for e in ev], [e["loss"]["mean"] for e in ev], yerr=se, fmt="o", ms=4, capsize=3,
                        color=line.get_color(), label=f"{label(run)} held-out (±1 SE)")
    ax.set_ylabel("training loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_eval(results, out):
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for path in results:
        r = json.load(open(os.path.join(path, "result.json")))
        curve = r.get("curve")
        if curve:  # eighth-octave bins, mean and standard error across windows
            x = np.array([np.sqrt((b["start"] + 1) * b["end"]) for b in curve])
            y = np.array([b["loss"] for b in curve])
            se = np.array([b["se"] if b.get("se") is not None else np.nan for b in curve])
        else:  # an older result: bin the per-position means, no error band
            loss = np.array(r["per_position"])
            edges = np.unique(np.round(2 ** np.arange(0, np.log2(len(loss)) + 0.125, 0.125)).astype(int))
            edges = np.append(edges[edges < len(loss)], len(loss))
            x = np.array([np.sqrt(a * b) for a, b in zip(edges[:-1], edges[1:])])
            y = np.array([loss[a - 1:b - 1].mean() for a, b in zip(edges[:-1], edges[1:])])
            se = np.full(len(y), np.nan)
        band = "" if np.all(np.isnan(se)) else ", band: ±1 SE"
        (line,) = ax.plot(x, y, label=f"{label(path)} ({r['config']}, trained at {r['trained_context']}, {r['form']}, {r['windows']} windows{band})")
        if not np.all(np.isnan(se)):
            ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.axvline(r["trained_context"], color=line.get_color(), linestyle=":", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens of context (position + 1; dotted: training context)")
    ax.set_ylabel("mean loss (nats/token)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_probe(results, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    for path in results:
        r = json.load(open(os.path.join(path, "probe.json")))
        ds = r["distances"]
        if not ds:
            sys.exit(f"{path}/probe.json: no distances (all skipped)")
        se = [d["gain"]["se"] if d["gain"]["se"] is not None else 0 for d in ds]
        ax.errorbar([d["delta"] for d in ds], [d["gain"]["mean"] for d in ds], yerr=se, marker="o", capsize=3,
                    label=f"{label(path)} ({r['config']}, {r['attention']}, trained at {r['trained_context']}, {r['windows']} windows)")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"distance Δ between the copies (tokens; span {r['span']})")
    ax.set_ylabel("copy gain: control - second copy (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_funnel(datasets, out):
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k, dataset in enumerate(datasets):
        build = json.load(open(os.path.join(dataset, "index.json"))).get("build") or {}
        counts = build.get("counts", {})
        funnel = build.get("funnel") or ["records", "dropped_empty", "dropped_unreadable", "dropped_too_short", "kept"]
        stages, left = [], []
        remaining = counts.get(funnel[0], 0)
        for key in funnel:
            if key.startswith("dropped_"):
                remaining -= counts.get(key, 0)
            stages.append(key.removeprefix("dropped_"))
            left.append(remaining if key != funnel[-1] else counts.get(key, 0))
        x = np.arange(len(stages)) + (k - (len(datasets) - 1) / 2) * 0.8 / len(datasets)
        ax.bar(x, np.maximum(left, 0.5), width=0.8 / len(datasets), label=label(dataset))
        color = ax.patches[-1].get_facecolor()
        for name, style in (("lengths_read", "--"), ("lengths_kept", "-")):
            bins = counts.get(name, [])
            if bins:
                hist.step(2.0 ** np.arange(len(bins)), bins, where="post", linestyle=style, color=color,
                          label=f"{label(dataset)}: {name.removeprefix('lengths_')}")
    ax.set_xticks(np.arange(len(stages)), stages, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("records left after the stage")
    ax.set_title("preprocessing funnel")
    ax.legend()
    hist.set_xscale("log", base=2)
    hist.set_yscale("log")
    hist.set_xlabel("document length, UTF-8 bytes (bins of [2^b, 2^(b+1)))")
    hist.set_ylabel("documents")
    hist.set_title("documents read and kept by length")
    hist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["train", "eval", "probe", "funnel"])
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    for path in a.paths:
        if not os.path.isdir(path):
            sys.exit(f"{path}: not a folder")
    {"train": plot_train, "eval": plot_eval, "probe": plot_probe, "funnel": plot_funnel}[a.kind](a.paths, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
