#!/usr/bin/env python3
"""Expected GPT-2 token ids from tiktoken, built offline from data/gpt2 (tiktoken.get_encoding would use the network).

usage: tiktoken_ids.py OUT_DIR FILE...
       tiktoken_ids.py --records IN OUT
For each FILE writes OUT_DIR/<file name>.ids: tiktoken's encode_ordinary of the file's bytes decoded as UTF-8 with
errors="replace", as little-endian uint16. With --records, IN holds many short texts, each a little-endian uint32
byte count then the bytes; OUT gets, for each, its id count as two uint16 (low half first) then the ids.
"""
import os
import sys

import numpy as np


def gpt2_encoding():
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gpt2")
    ranks = data_gym_to_mergeable_bpe_ranks(
        os.path.join(here, "vocab.bpe"), os.path.join(here, "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
    return tiktoken.Encoding(name="gpt2", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


def records(enc, src, dst):
    data, out, i = open(src, "rb").read(), [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "little")
        ids = enc.encode_ordinary(data[i + 4:i + 4 + n].decode("utf-8", errors="replace"))
        out += [len(ids) & 0xFFFF, len(ids) >> 16] + ids
        i += 4 + n
    np.asarray(out, dtype="<u2").tofile(dst)


def main():
    enc = gpt2_encoding()
    if sys.argv[1] == "--records":
        return records(enc, sys.argv[2], sys.argv[3])
    out_dir, files = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    for path in files:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        ids = np.asarray(enc.encode_ordinary(text), dtype="<u2")
        ids.tofile(os.path.join(out_dir, os.path.basename(path) + ".ids"))


if __name__ == "__main__":
    main()
