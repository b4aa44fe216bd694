#!/usr/bin/env python3
"""Reference stack for docs/results.md: the same GLUE recipe as `petl train`, run by PyTorch +
transformers + the `adapters` library (Houlsby configuration).

    .venv-ref/bin/python scripts/reference/glue-reference.py --model models/all-MiniLM-L6-v2 \
        --task rte --data ../shared/data/glue/RTE --tune adapter --lr 3e-4 --epochs 3 \
        --batch 32 --max-len 128 --seed 42 --threads 2

Prints "trainable parameters: N of M (P% of the model)" and per-epoch dev scores on stderr and
one JSON object on stdout (best epoch's dev metrics, per-epoch metrics, seconds, parameter counts).

What it does, and where it differs from petl:
- Model: transformers' BertForSequenceClassification from the same folder (pooler from the
  checkpoint, dropout 0.1, classifier Linear(H, labels) initialised N(0, 0.02), zero bias; STS-B
  regression with one output and MSE). For other families (MPNet) the same head on the family's
  base model (AutoModel with its pooler), not transformers' MPNetForSequenceClassification, whose
  head is a different one (dense + tanh on the first token, trained): petl puts BERT's head on
  every family. MPNet's adapters come from the library's plugin interface (adapters 1.3 has no
  built-in MPNet support), at the same two places.
- Adapters (--tune adapter): adapters.init(model); add_adapter(DoubleSeqBnConfig(
  reduction_factor=H/size, non_linearity="gelu", init_weights="houlsby")): after the attention
  output projection and after the feed-forward output projection, before residual + LayerNorm,
  as in the paper and in petl. The library's "houlsby" init is a truncated normal with sd 1e-2
  (cut at ±2 sd), zero biases; petl's default is sd 1e-3, so the adapter weights are
  re-initialised here by hand with torch.nn.init.trunc_normal_(sd=--init-sd, a=-2sd, b=2sd),
  zero biases (the library has no setting for the sd).
- What is trained: set by hand through requires_grad (the library's train_adapter() would freeze
  the LayerNorms): adapter = adapter weights + every LayerNorm (embeddings and both per layer) +
  classifier; layernorm = LayerNorms + classifier; head = classifier; full = everything. The
  pooler is frozen except with full (as in petl).
- Optimiser: AdamW (betas 0.9/0.999, eps 1e-6, decoupled weight decay 0.01 except on LayerNorms
  and biases) written out here so that, like petl's default and BERT's original optimiser, it
  has no bias correction (--bias-correction turns it on); global gradient-norm clip 1.0; linear
  warmup over 10% of the steps, then linear decay to 0 (transformers'
  get_linear_schedule_with_warmup).
- Batches: rows shuffled per epoch (seeded), grouped into chunks of 50 batches sorted by length,
  batches of --batch rows padded to their longest row, batch order shuffled (similar-length
  batches with dynamic padding, as petl does; not the same order as petl's).
- Dev evaluated after each epoch (dropout off); the best epoch by the task's primary metric is
  reported, as petl does.
"""
import argparse
import json
import math
import random
import resource
import sys
import time

import numpy as np
import torch

PRIMARY = {"rte": "accuracy", "mrpc": "f1", "stsb": "spearman", "cola": "mcc", "sst2": "accuracy"}


def read_task(task, path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    rows = [l.split("\t") for l in text.split("\n") if l != ""]
    out = []
    if task == "cola":
        out = [(r[3], None, r[1]) for r in rows]
    elif task == "sst2":
        out = [(r[0], None, r[1]) for r in rows[1:]]
    elif task == "mrpc":
        out = [(r[3], r[4], r[0]) for r in rows[1:]]
    elif task == "rte":
        out = [(r[1], r[2], r[3]) for r in rows[1:]]
    elif task == "stsb":
        out = [(r[7], r[8], r[-1]) for r in rows[1:]]
    else:
        raise SystemExit("unknown task " + task)
    return out


def labels_for(task):
    return {"rte": ["entailment", "not_entailment"], "mrpc": ["0", "1"], "cola": ["0", "1"],
            "sst2": ["0", "1"], "stsb": None}[task]


def ranks(x):
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    i = 0
    xs = x[order]
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return r


def pearson(a, b):
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def metrics(task, pred, gold):
    if task == "stsb":
        return {"pearson": pearson(pred, gold), "spearman": pearson(ranks(pred), ranks(gold)),
                "mse": float(np.mean((np.asarray(pred) - np.asarray(gold)) ** 2))}
    pred, gold = np.asarray(pred), np.asarray(gold)
    m = {"accuracy": float((pred == gold).mean())}
    tp = int(((pred == 1) & (gold == 1)).sum())
    fp = int(((pred == 1) & (gold == 0)).sum())
    fn = int(((pred == 0) & (gold == 1)).sum())
    tn = int(((pred == 0) & (gold == 0)).sum())
    if task == "mrpc":
        m["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    if task == "cola":
        d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        m["mcc"] = (tp * tn - fp * fn) / d if d else 0.0
    return m


def encode(tok, rows, task, max_len):
    labs = labels_for(task)
    enc = []
    for a, b, y in rows:
        e = tok(a, b, truncation=True, max_length=max_len)
        lab = float(y) if labs is None else labs.index(y)
        enc.append((e["input_ids"], e.get("token_type_ids") or [0] * len(e["input_ids"]), lab))
    return enc


PAD_ID = 0  # the tokenizer's, set in main


def collate(items):
    n = max(len(i[0]) for i in items)
    ids = torch.full((len(items), n), PAD_ID, dtype=torch.long)
    tt = torch.zeros(len(items), n, dtype=torch.long)
    am = torch.zeros(len(items), n, dtype=torch.long)
    for k, (a, t, _) in enumerate(items):
        ids[k, :len(a)] = torch.tensor(a)
        tt[k, :len(t)] = torch.tensor(t)
        am[k, :len(a)] = 1
    labs = [i[2] for i in items]
    y = torch.tensor(labs, dtype=torch.float if isinstance(labs[0], float) else torch.long)
    return ids, tt, am, y


def batches(enc, bs, rng):
    idx = list(range(len(enc)))
    rng.shuffle(idx)
    chunk = bs * 50
    out = []
    for s in range(0, len(idx), chunk):
        c = sorted(idx[s:s + chunk], key=lambda i: len(enc[i][0]))
        out += [c[k:k + bs] for k in range(0, len(c), bs)]
    rng.shuffle(out)
    return out


class AdamW(torch.optim.Optimizer):
    """AdamW with decoupled weight decay; bias correction optional (BERT's optimiser has none)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.bias_correction = bias_correction

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                st["step"] += 1
                m, v = st["m"], st["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                lr = g["lr"]
                if self.bias_correction:
                    lr = lr * math.sqrt(1 - b2 ** st["step"]) / (1 - b1 ** st["step"])
                p.addcdiv_(m, v.sqrt().add_(g["eps"]), value=-lr)
                if g["weight_decay"]:
                    p.add_(p, alpha=-g["lr"] * g["weight_decay"])


def setup_torch(threads, seed):
    """`threads` threads, no inter-op pool, every generator seeded (shared with
    squad-reference.py)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PooledClassifier(torch.nn.Module):
    """BertForSequenceClassification's head on any family's base model: dropout, then
    Linear(H, labels) (N(0, 0.02), zero bias) on the pooler output; cross-entropy, or MSE with
    one output."""

    def __init__(self, base, num_labels, dropout):
        super().__init__()
        self.base = base
        self.config = base.config
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(base.config.hidden_size, num_labels)
        torch.nn.init.normal_(self.classifier.weight, std=0.02)
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask, labels=None, **kw):
        from transformers.modeling_outputs import SequenceClassifierOutput
        pooled = self.base(input_ids=input_ids, attention_mask=attention_mask, **kw).pooler_output
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if logits.shape[-1] == 1:
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1), labels)
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def adapters_init(model):
    """adapters.init, with the plugin interface for MPNet (no built-in support in adapters 1.3):
    the bottleneck adapters after attention.attn.o and after output.dense, before the residual
    LayerNorms, as in BERT."""
    import adapters
    if model.config.model_type != "mpnet":
        adapters.init(model)
        return
    adapters.init(model, interface=adapters.AdapterModelInterface(
        adapter_methods=["bottleneck"], model_embeddings="embeddings", model_layers="encoder.layer",
        layer_self_attn="attention.attn", layer_cross_attn=None, attn_q_proj="q", attn_k_proj="k",
        attn_v_proj="v", attn_o_proj="o", layer_intermediate_proj="intermediate.dense",
        layer_output_proj="output.dense", layer_ln_1="attention.LayerNorm", layer_ln_2="output.LayerNorm"))


def add_houlsby_adapters(model, size, sd):
    """The adapters library's Houlsby configuration (DoubleSeqBnConfig, GELU) of bottleneck
    `size`, re-initialised as petl does: truncated normal weights (sd, cut at 2 sd), zero
    biases (the library has no setting for the sd)."""
    from adapters import DoubleSeqBnConfig
    adapters_init(model)
    H = model.config.hidden_size
    model.add_adapter("task", config=DoubleSeqBnConfig(reduction_factor=H / size, non_linearity="gelu",
                                                       init_weights="houlsby"))
    model.set_active_adapters("task")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".adapters." in n:
                if n.endswith("weight"):
                    torch.nn.init.trunc_normal_(p, mean=0.0, std=sd, a=-2 * sd, b=2 * sd)
                else:
                    p.zero_()


def make_optimiser(model, lr, weight_decay, bias_correction=False):
    """AdamW over the trainable parameters, no weight decay on LayerNorms and biases."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if ("LayerNorm" in n or n.endswith("bias")) else decay).append(p)
    return AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                 lr=lr, eps=1e-6, bias_correction=bias_correction)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", required=True, choices=sorted(PRIMARY))
    ap.add_argument("--data", required=True)
    ap.add_argument("--tune", default="adapter", choices=["adapter", "full", "layernorm", "head"])
    ap.add_argument("--adapter-size", type=int, default=64)
    ap.add_argument("--init-sd", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--bias-correction", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate on dev every N steps (JSON lines on stderr: step, train_s, metrics)")
    ap.add_argument("--stop-at", type=float, default=None,
                    help="stop once the primary dev metric reaches this (with --eval-every): time to accuracy")
    a = ap.parse_args()

    t_start = time.time()
    setup_torch(a.threads, a.seed)
    from transformers import (AutoConfig, AutoModel, AutoTokenizer, BertForSequenceClassification,
                              get_linear_schedule_with_warmup)

    global PAD_ID
    tok = AutoTokenizer.from_pretrained(a.model)
    PAD_ID = tok.pad_token_id or 0
    train = encode(tok, read_task(a.task, a.data + "/train.tsv"), a.task, a.max_len)
    dev = encode(tok, read_task(a.task, a.data + "/dev.tsv"), a.task, a.max_len)
    nl = 1 if a.task == "stsb" else 2
    cfg = AutoConfig.from_pretrained(a.model)
    if cfg.model_type == "bert":
        model = BertForSequenceClassification.from_pretrained(
            a.model, num_labels=nl, problem_type="regression" if nl == 1 else "single_label_classification")
        base = model
        types = True
    else:
        base = AutoModel.from_pretrained(a.model, add_pooling_layer=True)
        model = PooledClassifier(base, nl, cfg.hidden_dropout_prob)
        types = "token_type_ids" in base.forward.__code__.co_varnames
    if a.tune == "adapter":
        add_houlsby_adapters(base, a.adapter_size, a.init_sd)
    for n, p in model.named_parameters():
        if a.tune == "full":
            p.requires_grad = True
        elif a.tune == "adapter":
            p.requires_grad = ".adapters." in n or "LayerNorm" in n or n.startswith("classifier.")
        elif a.tune == "layernorm":
            p.requires_grad = "LayerNorm" in n or n.startswith("classifier.")
        else:
            p.requires_grad = n.startswith("classifier.")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print("trainable parameters: %d of %d (%.2f%% of the model)" % (trained, total, 100.0 * trained / total),
          file=sys.stderr, flush=True)
    if a.tune == "adapter":
        ad = [n for n, p in model.named_parameters() if ".adapters." in n]
        print("adapter tensors: %d, e.g. %s; active: %s" % (len(ad), ad[:4], base.active_adapters),
              file=sys.stderr)

    opt = make_optimiser(model, a.lr, a.weight_decay, a.bias_correction)
    steps_per_epoch = math.ceil(len(train) / a.batch)
    total_steps = steps_per_epoch * a.epochs
    sched = get_linear_schedule_with_warmup(opt, int(a.warmup * total_steps), total_steps)
    rng = random.Random(a.seed)

    def evaluate():
        model.eval()
        order = sorted(range(len(dev)), key=lambda i: len(dev[i][0]))
        pred = [None] * len(dev)
        with torch.no_grad():
            for s in range(0, len(order), 128):
                b = order[s:s + 128]
                ids, tt, am, _ = collate([dev[i] for i in b])
                lo = model(input_ids=ids, attention_mask=am, **({"token_type_ids": tt} if types else {})).logits
                out = lo[:, 0].tolist() if nl == 1 else lo.argmax(-1).tolist()
                for i, v in zip(b, out):
                    pred[i] = v
        model.train()
        return metrics(a.task, pred, [d[2] for d in dev])

    t_train = time.time()
    per_epoch, best, best_epoch = [], None, 0
    step = 0
    eval_s = 0.0  # time spent in the periodic evaluations, not counted as training
    reached = None  # (step, train seconds, metrics) of the first evaluation at --stop-at
    model.train()
    for ep in range(a.epochs):
        if reached:
            break
        tokens, t0, losses = 0, time.time(), []
        for b in batches(train, a.batch, rng):
            ids, tt, am, y = collate([train[i] for i in b])
            out = model(input_ids=ids, attention_mask=am, labels=y, **({"token_type_ids": tt} if types else {}))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += int(am.sum())
            losses.append(float(out.loss.detach()))
            if a.eval_every and step % a.eval_every == 0:
                t_e = time.time()
                m = evaluate()
                eval_s += time.time() - t_e
                line = {"step": step, "train_s": round(time.time() - t_train - eval_s, 3), "dev": m}
                print(json.dumps(line), file=sys.stderr, flush=True)
                if a.stop_at is not None and m[PRIMARY[a.task]] >= a.stop_at:
                    reached = line
                    break
            if step % 20 == 0:
                print("step %d/%d epoch %d loss %.4f %.0f tok/s" % (step, total_steps, ep + 1, np.mean(losses[-20:]),
                                                                  tokens / (time.time() - t0)), file=sys.stderr, flush=True)
        if reached:
            break
        m = evaluate()
        per_epoch.append(m)
        print("epoch %d/%d: train loss %.4f, dev %s (%.0f s)" % (ep + 1, a.epochs, np.mean(losses), json.dumps(m),
                                                               time.time() - t_train), file=sys.stderr, flush=True)
        if best is None or m[PRIMARY[a.task]] > best[PRIMARY[a.task]]:
            best, best_epoch = m, ep + 1
    res = dict(stack="pytorch+transformers+adapters", torch=torch.__version__, task=a.task, tune=a.tune,
               lr=a.lr, epochs=a.epochs, batch=a.batch, seed=a.seed, max_len=a.max_len,
               n_train=len(train), steps=step, best_epoch=best_epoch, dev=best, per_epoch=per_epoch,
               trained_params=trained, total_params=total, train_seconds=time.time() - t_train,
               seconds=time.time() - t_start, eval_every=a.eval_every, stop_at=a.stop_at, reached=reached,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    try:
        import transformers
        import adapters as ad
        res["transformers"] = transformers.__version__
        res["adapters"] = ad.__version__
    except ImportError:
        pass
    print(json.dumps(res))


if __name__ == "__main__":
    main()
