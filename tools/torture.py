#!/usr/bin/env python3
"""Torture the longcrawl binary: corrupted files, SIGKILLs, a full disk. Prints a table; exit status 1 if any
check failed. Not part of the test suite (the suite keeps one fast case of each kind).

  python3 tools/torture.py [--bin .build/release/longcrawl] [--quick] [--seed 1] [--work DIR]

Corruption: random single-byte changes and truncations of one shard at a time (both formats) must be reported by
`verify` (exit 1, naming the file), refused by `pack` (one batch of every window of the split: exit 1, one line naming
the file), and reading every window back through the training reader (`inspect --raw`) must give, per window, an
error or the original tokens. Faults in index.json, in a checkpoint's
three files and in an eval-window file must be refused with one line naming the file, or be harmless (same
result). Never a crash (a signal, exit status >= 128, a stack trace).
Kills: SIGKILL at random times during preprocess (both formats, --workers 2), train (including inside checkpoint
writes) and import, then --resume: the same shard bytes and index (but `created`) as an uninterrupted run, the same
losses bit for bit. Full disk (root: a tmpfs with size=): preprocess and checkpoints fail with one line, the previous
checkpoint stays loadable, and --resume completes once there is room.
"""
import argparse, json, os, random, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "data", "corpus-dev")
TINY = os.path.join(ROOT, "data", "configs", "tiny.json")
rows = []       # (area, fault, injected, passed, note)
failures = []   # details of failed checks


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, errors="replace", **kw)


def crashed(r):
    return r.returncode < 0 or r.returncode >= 128 or "Backtrac" in r.stderr or "Fatal error" in r.stderr


def one_line_naming(r, name):
    """Refused with one error line that names the file (progress lines aside)."""
    lines = [l for l in r.stderr.splitlines() if l.startswith("Error")]
    return r.returncode != 0 and not crashed(r) and len(lines) == 1 and name in lines[0]


def fail(what):
    failures.append(what)
    if len(failures) <= 30:
        print("FAIL:", what, file=sys.stderr)


def record(area, fault, injected, passed, note=""):
    if injected == 0:
        return
    rows.append((area, fault, injected, passed, note))
    print(f"  {area:28} {fault:34} {passed}/{injected} {note}", flush=True)


def dataset_bytes(d):
    out = {}
    for n in sorted(os.listdir(d)):
        if n.startswith("."):
            continue
        data = open(os.path.join(d, n), "rb").read()
        if n == "index.json":
            j = json.loads(data)
            j.pop("created")
            data = json.dumps(j, sort_keys=True).encode()
        out[n] = data
    return out


def mutate(path, rng, kind, original):
    """Applies one fault to `path` (whose bytes are `original`); returns a description."""
    if kind == "byte":
        at = rng.randrange(len(original))
        new = original[at] ^ rng.randrange(1, 256)
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(bytes([new]))
        return f"byte {at}: {original[at]:#04x} -> {new:#04x}"
    keep = rng.randrange(len(original))
    with open(path, "r+b") as f:
        f.truncate(keep)
    return f"truncated to {keep} of {len(original)}"


def restore(path, original):
    with open(path, "wb") as f:
        f.write(original)


# ---------------------------------------------------------------- corruption

def corrupt_shards(work, fmt, bytes_n, trunc_n, rng):
    ds = os.path.join(work, f"ds-{fmt}")
    r = run(["preprocess", CORPUS, "--out", ds, "--windows-per-doc", "all", "--format", fmt, "--workers", "2"])
    assert r.returncode == 0, r.stderr
    index = json.load(open(os.path.join(ds, "index.json")))
    truth = {}
    for split in ("train", "heldout"):
        raw = os.path.join(work, f"truth-{split}.u16")
        r = run(["inspect", ds, "--split", split, "--raw", raw])
        assert r.returncode == 0, r.stderr
        truth[split] = open(raw, "rb").read()
    first, n = {}, {}
    for s in index["shards"]:
        first[s["file"]] = n.get(s["split"], 0)
        n[s["split"]] = n.get(s["split"], 0) + s["windows"]
    sizes = [s["bytes"] for s in index["shards"]]
    W = 65536 * 2
    for kind, count in (("byte", bytes_n), ("truncate", trunc_n)):
        detected = wrong = refused = 0
        for _ in range(count):
            s = rng.choices(index["shards"], weights=sizes)[0]
            path = os.path.join(ds, s["file"])
            original = open(path, "rb").read()
            what = mutate(path, rng, kind, original)
            try:
                v = run(["verify", ds])
                if v.returncode == 1 and s["file"] in v.stdout and not crashed(v):
                    detected += 1
                else:
                    fail(f"{fmt} {s['file']} {what}: verify rc {v.returncode}: {v.stdout[-300:]}")
                # The training path (one batch of every window of the split): the shard's size and SHA-256 are checked
                # against index.json before it is parsed, so every fault is one line naming it, never a signal.
                p = run(["pack", ds, "--split", s["split"], "--batch", str(n[s["split"]]), "--context", "64"])
                if one_line_naming(p, s["file"]) and p.returncode == 1:
                    refused += 1
                else:
                    fail(f"{fmt} {s['file']} {what}: pack rc {p.returncode}: {p.stderr[-300:]}")
                raw = os.path.join(work, "got.u16")
                d = run(["inspect", ds, "--split", s["split"], "--raw", raw])
                if crashed(d):
                    fail(f"{fmt} {s['file']} {what}: reader crashed: {d.stderr[-300:]}")
                    continue
                failed = {int(l.split(":")[0].split()[1]) for l in d.stderr.splitlines() if l.startswith("window ")}
                if any(s["file"] not in l for l in d.stderr.splitlines() if l.startswith("window ")):
                    fail(f"{fmt} {s['file']} {what}: a read error does not name the file: {d.stderr[:300]}")
                got = open(raw, "rb").read()
                want = truth[s["split"]]
                k = 0
                bad = False
                for w in range(n[s["split"]]):
                    if w in failed:
                        continue
                    if got[k * W:(k + 1) * W] != want[w * W:(w + 1) * W]:
                        bad = True
                    k += 1
                if bad:
                    wrong += 1
                    fail(f"{fmt} {s['file']} {what}: WRONG TOKENS returned")
            finally:
                restore(path, original)
        record(f"shards ({fmt})", f"{'single-byte change' if kind == 'byte' else 'truncation'}: verify detects", count, detected)
        record(f"shards ({fmt})", f"{kind}: reader errs or returns original", count, count - wrong, f"wrong tokens returned: {wrong}")
        record(f"shards ({fmt})", f"{kind}: pack refuses in one line", count, refused, "exit 1, naming the shard")
    return ds


def corrupt_small_file(area, path, count, rng, check, harmless_note):
    """Faults in a small file: each must be refused with one line naming it, or give the original result."""
    if count == 0:
        return
    original = open(path, "rb").read()
    refused = harmless = 0
    harmless_where = set()
    for kind, n in (("byte", count), ("truncate", max(1, count // 10))):
        for _ in range(n):
            what = mutate(path, rng, kind, original)
            try:
                verdict = check(os.path.basename(path))
                if verdict == "refused":
                    refused += 1
                elif verdict == "same":
                    harmless += 1
                    harmless_where.add(what.split(":")[0] if kind == "byte" else what)
                else:
                    fail(f"{area} {what}: {verdict}")
            finally:
                restore(path, original)
    total = count + max(1, count // 10)
    record(area, "byte changes + truncations", total, refused + harmless, f"refused {refused}, harmless {harmless} ({harmless_note})")


def corrupt_index(work, ds, count, rng):
    ref_verify = run(["verify", ds]).stdout
    ref = {s: run(["inspect", ds, "--split", s, "--raw", os.path.join(work, f"idx-{s}.u16")]).returncode for s in ("train", "heldout")}
    assert ref == {"train": 0, "heldout": 0}
    truth = {s: open(os.path.join(work, f"idx-{s}.u16"), "rb").read() for s in ("train", "heldout")}

    def check(name):
        v = run(["verify", ds])
        if crashed(v):
            return f"verify crashed: {v.stderr[-300:]}"
        if v.returncode == 0:
            for s in ("train", "heldout"):
                d = run(["inspect", ds, "--split", s, "--raw", os.path.join(work, "got.u16")])
                if crashed(d):
                    return f"reader crashed: {d.stderr[-300:]}"
                if d.returncode != 0 and not one_line_naming(d, name):
                    return f"reader: {d.stderr[-300:]}"
                if d.returncode == 0 and open(os.path.join(work, "got.u16"), "rb").read() != truth[s]:
                    return "verify passed but the windows differ"
            return "same" if v.stdout == ref_verify else f"verify passed differently: {v.stdout}"
        return "refused" if "index.json" in v.stdout or any(f in v.stdout for f in os.listdir(ds)) else f"verify: {v.stdout[-300:]}"
    corrupt_small_file("index.json", os.path.join(ds, "index.json"), count, rng, check, "JSON whitespace, `created`")


def corrupt_checkpoint(work, ds, count, rng):
    runf = os.path.join(work, "ckpt-run")
    r = run(["train", "--data", ds, "--config", TINY, "--context", "64", "--batch", "2", "--steps", "2", "--save-every", "2", "--out", runf])
    assert r.returncode == 0, r.stderr
    ev = os.path.join(work, "eval.h5")
    r = run(["sample", ds, "--count", "2", "--seed", "1", "--context", "64", "--out", ev])
    assert r.returncode == 0, r.stderr
    ckpt = os.path.join(runf, "checkpoints", "step-000002")
    result = os.path.join(work, "result")

    def evaluate():
        e = run(["eval", "--checkpoint", ckpt, "--windows", ev, "--out", result])
        return e, (json.load(open(os.path.join(result, "result.json")))["per_position"] if e.returncode == 0 else None)
    _, truth = evaluate()

    def check_eval(name):
        e, got = evaluate()
        if crashed(e):
            return f"eval crashed: {e.stderr[-300:]}"
        if e.returncode != 0:
            return "refused" if one_line_naming(e, name) else f"eval: {e.stderr[-300:]}"
        return "same" if got == truth else "eval passed with other losses (a wrong value loaded)"

    corrupt_small_file("checkpoint model.safetensors", os.path.join(ckpt, "model.safetensors"), count, rng, check_eval, "none expected")
    corrupt_small_file("checkpoint state.json", os.path.join(ckpt, "state.json"), count, rng, check_eval, "JSON whitespace")
    # The optimizer file is read by --resume only: resume a copy of the run (already at its last step: load, stop).
    def check_opt(name):
        scratch = os.path.join(work, "resume-copy")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(runf, scratch)
        r = run(["train", "--out", scratch, "--resume"])
        if crashed(r):
            return f"resume crashed: {r.stderr[-300:]}"
        if r.returncode != 0:
            return "refused" if one_line_naming(r, name) else f"resume: {r.stderr[-300:]}"
        return "same"  # loaded: only possible when the SHA-256 in state.json matched, i.e. the bytes are the original's
    corrupt_small_file("checkpoint optimizer.safetensors", os.path.join(ckpt, "optimizer.safetensors"), max(10, count // 4) if count else 0, rng, check_opt,
                       "none expected")
    corrupt_small_file("eval-window file (sample)", ev, count, rng, check_eval, "the zero padding of the user block, after its checksum line")
    return ev


# ---------------------------------------------------------------- kills

def kill_loop(area, kills, start, resume, compare, max_delay, rng, during=None):
    survived = 0
    inside = 0
    for i in range(kills):
        p = start(i)
        time.sleep(rng.uniform(0, max_delay()))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if during and during(i):
            inside += 1
        r = resume(i)
        if r.returncode != 0:
            fail(f"{area} kill {i}: resume failed: {r.stderr[-300:]}")
            continue
        ok = compare(i)
        survived += ok
        if not ok:
            fail(f"{area} kill {i}: result differs from the uninterrupted run")
    record(area, "SIGKILL then --resume: identical", kills, survived, f"{inside} inside a checkpoint write" if during else "")


def kills_preprocess(work, fmt, kills, rng):
    args = ["preprocess", CORPUS, "--windows-per-doc", "all", "--format", fmt, "--workers", "2", "--shard-windows", "8"]
    ref = os.path.join(work, f"kill-ref-{fmt}")
    t0 = time.time()
    assert run(args + ["--out", ref]).returncode == 0
    duration = time.time() - t0
    want = dataset_bytes(ref)
    out = lambda i: os.path.join(work, f"kill-{fmt}-{i}")
    def start(i):
        return subprocess.Popen([BIN] + args + ["--out", out(i)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def compare(i):
        same = dataset_bytes(out(i)) == want
        shutil.rmtree(out(i), ignore_errors=True)
        return same
    kill_loop(f"kills: preprocess ({fmt})", kills, start, lambda i: run(args + ["--out", out(i), "--resume"]), compare,
              lambda: duration * 1.1, rng)


def losses(runf):
    return [json.loads(l)["loss"] for l in open(os.path.join(runf, "metrics.jsonl"))]


def kills_train(work, ds, kills, steps, rng):
    args = ["train", "--data", ds, "--config", TINY, "--context", "64", "--batch", "2", "--steps", str(steps), "--save-every", "2", "--keep", "2"]
    ref = os.path.join(work, "train-ref")
    t0 = time.time()
    assert run(args + ["--out", ref]).returncode == 0
    duration = time.time() - t0
    want = losses(ref)
    out = lambda i: os.path.join(work, f"train-kill-{i}")
    def start(i):
        return subprocess.Popen([BIN] + args + ["--out", out(i)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def during(i):
        d = os.path.join(out(i), "checkpoints")
        return os.path.isdir(d) and any(n.endswith(".tmp") for n in os.listdir(d))
    def resume(i):
        ck = os.path.join(out(i), "checkpoints")
        if os.path.isdir(ck) and any(n.startswith("step-") for n in os.listdir(ck)):
            return run(["train", "--out", out(i), "--resume"])
        return run(args + ["--out", out(i), "--force"])  # killed before the first checkpoint: nothing to resume
    def compare(i):
        same = losses(out(i)) == want
        shutil.rmtree(out(i), ignore_errors=True)
        return same
    kill_loop("kills: train (tiny, T=64)", kills, start, resume, compare, lambda: duration, rng, during)


def make_zarr(path, rows, seed):
    import numcodecs, numpy as np, zarr
    rng = np.random.default_rng(seed)
    a = zarr.open_array(path, mode="w", shape=(rows, 65536), chunks=(16, 4096), dtype="<u2", zarr_format=2,
                        compressor=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1))
    a[:] = (rng.integers(0, 1 << 30, size=(rows, 65536)) % 50257).astype("<u2")


def kills_import(work, kills, rows, rng):
    store = os.path.join(work, "train.zarr")
    make_zarr(store, rows, 7)
    args = ["import", store, "--format", "zst", "--shard-windows", "4"]
    ref = os.path.join(work, "import-ref")
    t0 = time.time()
    assert run(args + ["--out", ref]).returncode == 0
    duration = time.time() - t0
    want = dataset_bytes(ref)
    out = lambda i: os.path.join(work, f"import-kill-{i}")
    def start(i):
        return subprocess.Popen([BIN] + args + ["--out", out(i)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def compare(i):
        same = dataset_bytes(out(i)) == want
        shutil.rmtree(out(i), ignore_errors=True)
        return same
    kill_loop("kills: import (zarr, zst)", kills, start, lambda i: run(args + ["--out", out(i), "--resume"]), compare,
              lambda: duration * 1.1, rng)


# ---------------------------------------------------------------- full disk

def full_disk(work, ds, ev):
    if os.geteuid() != 0:
        record("full disk", "skipped (needs root for a tmpfs)", 0, 0)
        return
    mnt = os.path.join(work, "small-fs")
    os.makedirs(mnt, exist_ok=True)
    def mount(size):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt], check=True)
    def grow(size):
        subprocess.run(["mount", "-o", f"remount,size={size}", mnt], check=True)
    try:
        # Preprocess: the hdf5 dataset of the whole corpus (about 13 MB) into 6 MB.
        for fmt in ("hdf5", "zst"):
            mount("6m")
            args = ["preprocess", CORPUS, "--windows-per-doc", "all", "--format", fmt, "--shard-windows", "8"]
            out = os.path.join(mnt, "ds")
            r = run(args + ["--out", out])
            ok = one_line_naming(r, mnt)
            if not ok:
                fail(f"full disk preprocess {fmt}: rc {r.returncode} {r.stderr[-400:]}")
            grow("64m")
            r2 = run(args + ["--out", out, "--resume"])
            ref = os.path.join(work, f"disk-ref-{fmt}")
            run(args + ["--out", ref])
            same = r2.returncode == 0 and dataset_bytes(out) == dataset_bytes(ref)
            if not same:
                fail(f"full disk preprocess {fmt}: resume {r2.returncode} {r2.stderr[-300:]}")
            record(f"full disk: preprocess ({fmt})", "one-line error, then --resume identical", 1, int(ok and same),
                   (r.stderr.strip().splitlines() or ["-"])[-1][:90])
            subprocess.run(["umount", mnt], check=True)
        # Checkpoints: tiny's checkpoint is about 39 MB; 60 MB holds one, not a second beside it.
        mount("60m")
        runf = os.path.join(mnt, "run")
        args = ["train", "--data", ds, "--config", TINY, "--context", "64", "--batch", "2", "--steps", "4", "--save-every", "2"]
        r = run(args + ["--out", runf])
        ok = one_line_naming(r, mnt) and "step-000004" in r.stderr
        ck = os.path.join(runf, "checkpoints")
        kept = sorted(n for n in os.listdir(ck) if not n.startswith("."))
        loadable = run(["eval", "--checkpoint", runf, "--windows", ev, "--out", os.path.join(work, "disk-eval")]).returncode == 0
        grow("200m")
        r2 = run(["train", "--out", runf, "--resume"])
        ref = os.path.join(work, "disk-train-ref")
        run(args + ["--out", ref])
        same = r2.returncode == 0 and losses(runf) == losses(ref)
        good = ok and kept == ["step-000002"] and loadable and same
        if not good:
            fail(f"full disk checkpoint: err {r.stderr[-300:]} kept {kept} loadable {loadable} resume {r2.returncode} same {same}")
        record("full disk: checkpoint", "one line, previous loadable, --resume identical", 1, int(good),
               (r.stderr.strip().splitlines() or ["-"])[-1][:90])
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build/release/longcrawl"))
    ap.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    parts = ["shards", "index", "checkpoint", "kills", "full-disk"]
    ap.add_argument("--only", help=f"comma-separated parts to run, of {','.join(parts)} (default: all)")
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else set(parts)
    if only - set(parts):
        sys.exit(f"--only: unknown part(s) {','.join(sorted(only - set(parts)))}; parts: {','.join(parts)}")
    BIN = os.path.abspath(a.bin)
    rng = random.Random(a.seed)
    q = a.quick
    work = a.work or tempfile.mkdtemp(prefix="torture-")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    try:
        print(f"torture {'--quick ' if q else ''}--seed {a.seed}: {BIN}, scratch {work}", flush=True)
        # The later parts use the zst dataset and the eval-window file these build (with no faults when not asked).
        for fmt in ("hdf5", "zst"):
            faults = "shards" in only
            ds = corrupt_shards(work, fmt, (40 if q else 1000) if faults else 0, (4 if q else 100) if faults else 0, rng)
        if "index" in only:
            corrupt_index(work, ds, 20 if q else 200, rng)
        ev = corrupt_checkpoint(work, ds, (20 if q else 200) if "checkpoint" in only else 0, rng)
        if "kills" in only:
            for fmt in ("hdf5", "zst"):
                kills_preprocess(work, fmt, 2 if q else 20, rng)
            kills_train(work, ds, 2 if q else 20, 8, rng)
            kills_import(work, 2 if q else 20, 32 if q else 64, rng)
        if "full-disk" in only:
            full_disk(work, ds, ev)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n| area | fault | passed / injected | notes |\n| --- | --- | ---: | --- |")
    for area, fault, n, ok, note in rows:
        print(f"| {area} | {fault} | {ok} / {n} | {note} |")
    print(f"\n{len(failures)} failed check(s), {time.time() - t0:.0f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
