#!/usr/bin/env python3
"""Reference stack for the SQuAD rows of docs/results.md: the recipe of `petl train --task squad`
run by PyTorch + transformers + the `adapters` library (Houlsby configuration).

    .venv-ref/bin/python scripts/reference/squad-reference.py --model models/all-MiniLM-L6-v2 \
        --data ../shared/data/squad/dev-v1.1.json --tune adapter --adapter-size 64 --lr 1e-3 \
        --epochs 2 --batch 32 --seed 42 --threads 2

Prints per-epoch EM / F1 on stderr and one JSON object on stdout (the best epoch by F1, every
epoch, seconds, peak RSS, parameter counts).

What it does, and where it differs from petl:
- Data: the SQuAD v1.1 file split by article as petl splits the dev file by default: articles
  [0, 38) train, [38, 48) evaluation (--train-articles / --eval-articles take "B:E").
- Windows: Google's run_squad.py windowing (query at most 64 tokens, sequence 384, a window
  started every 128 context tokens, max-context rule) built by features_of() of
  gen-squad-golden.py, which test_squad holds identical to petl's windows; the answer's tokens
  are the context tokens overlapping its span (HF offsets), as in petl.
- Model: transformers' BertForQuestionAnswering from the same folder (qa_outputs initialised
  N(0, 0.02), zero bias). --tune adapter: adapters.init + DoubleSeqBnConfig(size, gelu), the
  adapter weights re-drawn from a truncated normal with sd --init-sd as glue-reference.py does;
  trained: adapters + every LayerNorm + qa_outputs; full: everything; head: qa_outputs;
  layernorm: LayerNorms + qa_outputs.
- Loss: the mean of the start and end cross-entropies over each row's real tokens (padded
  positions masked to -inf, as petl's span loss; HF's own loss would let padding into the
  softmax).
- Optimiser, schedule, batching: glue-reference.py's (AdamW without bias correction, eps 1e-6,
  weight decay 0.01 except LayerNorms and biases, clip 1.0, 10% warmup then linear decay,
  length-grouped batches with dynamic padding).
- Decoding: Google's write_predictions (top 20 starts / ends, answers of at most 30 tokens,
  max-context starts only), the answer text from the offsets; scored by the official
  evaluate-v1.1.py code (EM / F1 reported as fractions, as petl does).
"""
import argparse
import importlib.util
import json
import math
import os
import random
import resource
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sq = load("gen_squad_golden", "gen-squad-golden.py")
glue = load("glue_reference", "glue-reference.py")


def article_range(spec, n):
    if spec == "all":
        return 0, n
    b, e = spec.split(":")
    return int(b or 0), int(e) if e else n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="a SQuAD v1.1 JSON file")
    ap.add_argument("--train-articles", default="0:38")
    ap.add_argument("--eval-articles", default="38:")
    ap.add_argument("--max-train-questions", type=int, default=0)
    ap.add_argument("--max-eval-questions", type=int, default=0)
    ap.add_argument("--tune", default="adapter", choices=["adapter", "full", "layernorm", "head"])
    ap.add_argument("--adapter-size", type=int, default=64)
    ap.add_argument("--init-sd", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=384)
    ap.add_argument("--doc-stride", type=int, default=128)
    ap.add_argument("--max-query-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    t_start = time.time()
    glue.setup_torch(a.threads, a.seed)
    from transformers import AutoTokenizer, BertForQuestionAnswering, get_linear_schedule_with_warmup

    tok = AutoTokenizer.from_pretrained(a.model)
    data = json.load(open(a.data, encoding="utf-8"))["data"]

    def questions(spec, cap):
        b, e = article_range(spec, len(data))
        out = []
        for art in data[b:e]:
            for para in art["paragraphs"]:
                for qa in para["qas"]:
                    out.append((qa, para["context"]))
        return out[:cap] if cap else out

    def featurize(qs, train):
        feats = []
        for qi, (qa, ctx) in enumerate(qs):
            ans = qa["answers"][0] if train else None
            for f in sq.features_of(tok, qa["question"], ctx, ans["answer_start"] if ans else None,
                                    ans["text"] if ans else None, a.max_len, a.max_query_len, a.doc_stride):
                f["q"] = qi
                feats.append(f)
        return feats

    train_q = questions(a.train_articles, a.max_train_questions)
    eval_q = questions(a.eval_articles, a.max_eval_questions)
    train_f = featurize(train_q, True)
    eval_f = featurize(eval_q, False)
    print("train: %d questions, %d windows; eval: %d questions, %d windows"
          % (len(train_q), len(train_f), len(eval_q), len(eval_f)), file=sys.stderr, flush=True)

    model = BertForQuestionAnswering.from_pretrained(a.model)
    if a.tune == "adapter":
        glue.add_houlsby_adapters(model, a.adapter_size, a.init_sd)
    for n, p in model.named_parameters():
        head = n.startswith("qa_outputs.")
        p.requires_grad = {"full": True, "adapter": ".adapters." in n or "LayerNorm" in n or head,
                           "layernorm": "LayerNorm" in n or head, "head": head}[a.tune]
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print("trainable parameters: %d of %d (%.2f%% of the model)" % (trained, total, 100.0 * trained / total),
          file=sys.stderr, flush=True)

    opt = glue.make_optimiser(model, a.lr, a.weight_decay)
    enc = [(f["ids"], f["type_ids"], 0) for f in train_f]
    steps_per_epoch = math.ceil(len(enc) / a.batch)
    total_steps = steps_per_epoch * a.epochs
    sched = get_linear_schedule_with_warmup(opt, int(a.warmup * total_steps), total_steps)
    rng = random.Random(a.seed)

    def forward(items):
        ids, tt, am, _ = glue.collate(items)
        out = model(input_ids=ids, token_type_ids=tt, attention_mask=am)
        neg = torch.finfo(out.start_logits.dtype).min
        pad = am == 0
        return out.start_logits.masked_fill(pad, neg), out.end_logits.masked_fill(pad, neg)

    def evaluate():
        model.eval()
        starts, ends = [None] * len(eval_f), [None] * len(eval_f)
        order = sorted(range(len(eval_f)), key=lambda i: len(eval_f[i]["ids"]))
        with torch.no_grad():
            for s in range(0, len(order), 64):
                b = order[s:s + 64]
                st, en = forward([(eval_f[i]["ids"], eval_f[i]["type_ids"], 0) for i in b])
                for k, i in enumerate(b):
                    n = len(eval_f[i]["ids"])
                    starts[i] = st[k, :n].tolist()
                    ends[i] = en[k, :n].tolist()
        model.train()
        by_q = {}
        for i, f in enumerate(eval_f):
            by_q.setdefault(f["q"], []).append(i)
        preds = {}
        for qi, (qa, ctx) in enumerate(eval_q):
            fi = by_q.get(qi, [])
            r = sq.decode([eval_f[i] for i in fi], [starts[i] for i in fi], [ends[i] for i in fi])
            text = ""
            if r:
                raw = ctx.encode("utf-8")
                text = raw[r[1]:r[2]].decode("utf-8", errors="replace")
            preds[qa["id"]] = text
        b, e = article_range(a.eval_articles, len(data))
        arts = data[b:e]
        if a.max_eval_questions:  # score only the questions kept
            keep = {qa["id"] for qa, _ in eval_q}
            arts = [{"paragraphs": [{"qas": [q for q in p["qas"] if q["id"] in keep]} for p in art["paragraphs"]]}
                    for art in arts]
        m = sq.evaluate(arts, preds)
        return {"exact_match": m["exact_match"] / 100.0, "f1": m["f1"] / 100.0}

    t_train = time.time()
    per_epoch, best, best_epoch, step = [], None, 0, 0
    model.train()
    for ep in range(a.epochs):
        t0, tokens, losses = time.time(), 0, []
        for b in glue.batches(enc, a.batch, rng):
            st, en = forward([enc[i] for i in b])
            ys = torch.tensor([train_f[i]["start"] for i in b])
            ye = torch.tensor([train_f[i]["end"] for i in b])
            loss = (torch.nn.functional.cross_entropy(st, ys) + torch.nn.functional.cross_entropy(en, ye)) / 2
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += sum(len(enc[i][0]) for i in b)
            losses.append(float(loss.detach()))
            if step % 20 == 0:
                print("step %d/%d epoch %d loss %.4f %.0f tok/s" % (step, total_steps, ep + 1, np.mean(losses[-20:]),
                                                                  tokens / (time.time() - t0)), file=sys.stderr, flush=True)
        m = evaluate()
        per_epoch.append(m)
        print("epoch %d/%d: train loss %.4f, eval %s (%.0f s)" % (ep + 1, a.epochs, np.mean(losses), json.dumps(m),
                                                                time.time() - t_train), file=sys.stderr, flush=True)
        if best is None or m["f1"] > best["f1"]:
            best, best_epoch = m, ep + 1
    import transformers
    import adapters as ad
    print(json.dumps(dict(
        stack="pytorch+transformers+adapters", torch=torch.__version__, transformers=transformers.__version__,
        adapters=ad.__version__, task="squad", tune=a.tune, adapter_size=a.adapter_size, lr=a.lr,
        epochs=a.epochs, batch=a.batch, seed=a.seed, max_len=a.max_len, train_articles=a.train_articles,
        eval_articles=a.eval_articles, train_questions=len(train_q), train_windows=len(train_f),
        eval_questions=len(eval_q), steps=step, best_epoch=best_epoch, dev=best, per_epoch=per_epoch,
        trained_params=trained, total_params=total, train_seconds=time.time() - t_train,
        seconds=time.time() - t_start, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)))


if __name__ == "__main__":
    main()
