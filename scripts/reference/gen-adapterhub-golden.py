#!/usr/bin/env python3
"""Golden files of the AdapterHub export (tests/cli_adapterhub.sh, tests/test_adapterhub.c),
from the real `adapters` library (1.3.0) in the reference venv:

  tests/golden/adapterhub/CASE/            small petl adapters (all-MiniLM-L6-v2, size 8, 200
                                           SST-2 rows, 1 epoch) trained here with petl: petl-sst2
                                           (LayerNorms trained, as --tune adapter does) and
                                           petl-sst2-frozen-ln (--freeze-layernorms)
  tests/golden/adapterhub/sst2-dev.jsonl   the first 64 SST-2 dev sentences
  tests/golden/adapterhub/CASE.json        what `petl export` wrote from it (file -> SHA-256)
                                           and the class probabilities of the 64 sentences from
                                           adapters' BertAdapterModel with the export loaded
                                           (load_adapter(..., use_safetensors=True)) and the
                                           LayerNorm side file, when there is one, put in place
  tests/golden/adapterhub/hub-*/           adapters made with adapters itself (random weights on
                                           all-MiniLM-L6-v2), for `petl import`:
                                           hub-houlsby (double_seq_bn, swish, reduction_factor 48,
                                           a 2-layer head of 2 labels; saved as .bin, adapters'
                                           default), hub-ffn (the output adapter alone, gelu,
                                           layer 0 left out, a 2-layer head of 3 named labels;
                                           safetensors), hub-seqbn (seq_bn: refused), with
                                           hub-*.json the class probabilities adapters computes
  tests/golden/adapterhub/reduction.tsv    H, m, the reduction_factor petl must write (the
                                           double nearest H / m with int(H // rf) == m, Python's
                                           float floor division) for H in 384, 768, 1024 and
                                           every m in 1..H

Run: .venv-ref/bin/python scripts/reference/gen-adapterhub-golden.py --petl build/petl
[--model models/all-MiniLM-L6-v2] [--data ../shared/data]
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from adapters import AutoAdapterModel
from safetensors.torch import load_file
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "golden", "adapterhub")


def reduction_factor(h, m):
    rf = h / m
    for _ in range(64):
        q = int(h // rf)
        if q == m:
            return rf
        rf = math.nextafter(rf, 0.0 if q < m else math.inf)
    raise SystemExit("no reduction_factor for H=%d m=%d" % (h, m))


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--petl", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "reduction.tsv"), "w") as f:
        for h in (384, 768, 1024):
            for m in range(1, h + 1):
                rf = reduction_factor(h, m)
                assert int(h // rf) == m
                f.write("%d\t%d\t%s\n" % (h, m, rf.hex()))
    sst = os.path.join(args.data, "glue", "SST-2")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "sst"))
        for split, n in (("train", 201), ("dev", 65)):
            with open(os.path.join(sst, split + ".tsv"), encoding="utf-8") as src, \
                    open(os.path.join(tmp, "sst", split + ".tsv"), "w", encoding="utf-8") as dst:
                dst.writelines(src.readlines()[:n])
        texts = [line.rstrip("\n").split("\t")[0]
                 for line in open(os.path.join(tmp, "sst", "dev.tsv"), encoding="utf-8").readlines()[1:]]
        with open(os.path.join(OUT, "sst2-dev.jsonl"), "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        tok = AutoTokenizer.from_pretrained(args.model)
        for case, extra in (("petl-sst2", []), ("petl-sst2-frozen-ln", ["--freeze-layernorms"])):
            ad = os.path.join(OUT, case)
            shutil.rmtree(ad, ignore_errors=True)
            subprocess.run([args.petl, "train", "--model", args.model, "--task", "sst2", "--data",
                            os.path.join(tmp, "sst"), "--out", ad, "--epochs", "1", "--adapter-size",
                            "8", "--lr", "1e-3", "--max-len", "64", "--threads", "2"] + extra,
                           check=True, stdout=subprocess.DEVNULL)
            exp = os.path.join(tmp, "exp-" + case)
            subprocess.run([args.petl, "export", "--model", args.model, "--adapter", ad, "--out", exp,
                            "--name", "sst2", "--model-name", "sentence-transformers/all-MiniLM-L6-v2"],
                           check=True, stdout=subprocess.DEVNULL)
            files = {f: sha256(os.path.join(exp, f)) for f in sorted(os.listdir(exp))}
            m = AutoAdapterModel.from_pretrained(args.model)
            name = m.load_adapter(exp, use_safetensors=True)
            side = os.path.join(exp, "petl_layernorms.safetensors")
            if os.path.exists(side):
                missing, unexpected = m.load_state_dict(load_file(side), strict=False)
                assert not unexpected, unexpected
            m.set_active_adapters(name)
            m.eval()
            with torch.no_grad():
                enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
                probs = torch.softmax(m(**enc).logits.double(), -1).tolist()
            with open(os.path.join(OUT, case + ".json"), "w") as f:
                json.dump({"adapters": "1.3.0", "name": name, "files": files, "probs": probs}, f,
                          indent=1)
            print("%s: %d files, %d rows" % (case, len(files), len(probs)))
        from adapters import BnConfig, DoubleSeqBnConfig, SeqBnConfig
        cases = [("hub-houlsby", DoubleSeqBnConfig(reduction_factor=48), 2, 2, None, False),
                 ("hub-ffn", BnConfig(mh_adapter=False, output_adapter=True, reduction_factor=32,
                                      non_linearity="gelu", original_ln_before=False,
                                      original_ln_after=True, residual_before_ln=True,
                                      leave_out=[0]), 2, 3, {"neg": 0, "mid": 1, "pos": 2}, True),
                 ("hub-seqbn", SeqBnConfig(reduction_factor=48), 2, 2, None, False)]
        for case, cfg, layers, nl, l2i, safe in cases:
            torch.manual_seed(0)
            m = AutoAdapterModel.from_pretrained(args.model)
            m.add_adapter("hub", config=cfg)
            m.add_classification_head("hub", num_labels=nl, layers=layers, id2label=(
                {v: k for k, v in l2i.items()} if l2i else None))
            with torch.no_grad():  # away from the near-identity init, so that every weight counts
                for n, p in m.named_parameters():
                    if ".adapters.hub." in n or n.startswith("heads.hub"):
                        p.add_(torch.randn_like(p) * 0.05)
            out = os.path.join(OUT, case)
            shutil.rmtree(out, ignore_errors=True)
            m.save_adapter(out, "hub", use_safetensors=safe)
            m.set_active_adapters("hub")
            m.eval()
            with torch.no_grad():
                enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
                probs = torch.softmax(m(**enc).logits.double(), -1).tolist()
            with open(os.path.join(OUT, case + ".json"), "w") as f:
                json.dump({"adapters": "1.3.0", "probs": probs}, f, indent=1)
            print("%s: %s" % (case, sorted(os.listdir(out))))


if __name__ == "__main__":
    sys.exit(main())
