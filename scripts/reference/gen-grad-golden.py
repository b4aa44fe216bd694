#!/usr/bin/env python3
"""Writes the gradient golden files of tests/test_train.c from PyTorch autograd on transformers'
BertModel with Houlsby adapters added by a small reference module of our own.

Usage: .venv-ref/bin/python scripts/reference/gen-grad-golden.py [MODEL_DIR] [DATA_DIR]
       (defaults: models/all-MiniLM-L6-v2 and ../shared/data beside the repository)

The reference model (dropout off: eval mode):
    bert = transformers BertModel (eager attention) loaded from the checkpoint
    adapters: BertSelfOutput.forward and BertOutput.forward are wrapped so that
        h = dropout(dense(x)); h = A(h); out = LayerNorm(h + residual)
    with A(h) = h + adapter_up(act(adapter_down.0(h))) registered as the submodule
    `adapters.petl`, so its parameters carry the AdapterHub key names
    (bert.encoder.layer.L.attention.output.adapters.petl.adapter_down.0.weight, ...)
    head: classifier = Linear(H, num_labels) on bert's pooled output (dropout off);
    loss: CrossEntropyLoss (mean) or, for num_labels == 1, MSELoss(logits.squeeze(-1), target)
    (BertForSequenceClassification's problem types "single_label_classification" and
    "regression").
Trainable sets (requires_grad) as petl's --tune: adapter (adapters + every LayerNorm + head),
full (everything), layernorm (LayerNorms + head), head (classifier), top:K (the top K layers +
pooler + head).

Adapter and classifier initial values are drawn here (adapters: normal sd 0.05, larger than the
method's 1e-3 so that the nonlinearity and both projections matter in the gradients; classifier
normal sd 0.2; for the real model uniform values of the same scale from an integer hash that C
recomputes) and written to the golden file, which the C test loads into its task model. Every
other trained tensor starts as the checkpoint's.

Outputs (text, one record per line; floats as %.9g, exact for float32):
  tests/golden/grad/tiny.golden    the tiny random BERT of tests/golden/tiny-bert/plain: cases
                                   adapter (gelu, both places, 3 labels), adapter_ffn (swish, FFN
                                   only, regression), full, layernorm, head, top1; every trained
                                   gradient in full; plus 20 AdamW steps of the adapter case
  tests/golden/grad/minilm.golden  the real default checkpoint on 8 SST-2 dev sentences, --tune
                                   adapter (size 16): the loss, every trained gradient's L2 norm
                                   and 8 sampled entries (index, value) per tensor, including
                                   its largest; plus 20 AdamW steps
Format:
  case NAME TUNE TOP_K ADAPTER_SIZE ACT PLACEMENT NUM_LABELS
  batch B SEQ            then lines: ids ..., types ..., lengths ..., labels ... | targets ...
  init NAME NUMEL v...   initial values to load (adapters, classifier)
  inithash NAME NUMEL SALT SCALE   the same, as hash_values() below (real model)
  loss L
  grad NAME NUMEL v...   full gradient
  gnorm NAME NUMEL NORM idx v idx v ...   norm + samples
  steps N LR BIAS_CORRECTION WEIGHT_DECAY CLIP l1 ... lN   losses before each optimiser step
  end
gen-squad-grad-golden.py loads this file for the same pieces (adapters, initial values, trainable
sets, batch, file writers, AdamW steps) with a span head in place of the classifier.
"""
import contextlib
import os
import shutil
import sys
import tempfile

import torch
import torch.nn as nn
from transformers import AutoTokenizer, BertModel
from transformers.models.bert.modeling_bert import BertOutput, BertSelfOutput

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models/all-MiniLM-L6-v2")
DATA_DIR = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "../shared/data")
OUT = os.path.join(ROOT, "tests/golden/grad")


class Adapter(nn.Module):
    def __init__(self, d, m, act):
        super().__init__()
        self.adapter_down = nn.Sequential(nn.Linear(d, m))
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), "swish": nn.SiLU()}[act]
        self.adapter_up = nn.Linear(m, d)

    def forward(self, h):
        return h + self.adapter_up(self.act(self.adapter_down(h)))


def self_output_forward(self, hidden_states, input_tensor):
    h = self.dropout(self.dense(hidden_states))
    if hasattr(self, "adapters"):
        h = self.adapters["petl"](h)
    return self.LayerNorm(h + input_tensor)


BertSelfOutput.forward = self_output_forward
BertOutput.forward = self_output_forward  # same shape of code: dense, dropout, residual LN


class Ref(nn.Module):
    def __init__(self, model_dir, num_labels):
        super().__init__()
        self.bert = BertModel.from_pretrained(model_dir, dtype=torch.float32,
                                              attn_implementation="eager")
        self.classifier = nn.Linear(self.bert.config.hidden_size, num_labels)
        self.num_labels = num_labels

    def forward(self, ids, types, mask, labels=None, targets=None):
        out = self.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
        logits = self.classifier(out.pooler_output)
        if self.num_labels == 1:
            loss = nn.functional.mse_loss(logits.squeeze(-1), targets)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        return loss, logits


def add_adapters(bert, m, act, placement):
    """Puts an Adapter as `adapters.petl` on every layer's FFN output (placement "ffn") or on
    its attention output too ("both") of the BertModel BERT."""
    d = bert.config.hidden_size
    for layer in bert.encoder.layer:
        sites = [layer.output] if placement == "ffn" else [layer.attention.output, layer.output]
        for s in sites:
            s.adapters = nn.ModuleDict({"petl": Adapter(d, m, act)})


def trainable(name, tune, top_k, num_layers, head="classifier."):
    if tune == "full":
        return True
    if name.startswith(head):
        return True
    if tune == "head":
        return False
    if tune == "adapter":
        return ".adapters." in name or "LayerNorm" in name
    if tune == "layernorm":
        return "LayerNorm" in name
    if tune == "top":
        if name.startswith("bert.pooler."):
            return True
        if name.startswith("bert.encoder.layer."):
            return int(name.split(".")[3]) >= num_layers - top_k
        return False
    raise ValueError(tune)


def hash_values(n, salt, scale):
    """Initial values that C recomputes bit-exactly instead of reading them (keeps the real
    model's golden file small): v[i] = float32((h_i / 2^32 - 0.5) * scale) with the integer hash
    h_i = (i * 2654435761 + salt * 40503) mod 2^32, all arithmetic exact or in IEEE double."""
    out = []
    for i in range(n):
        h = (i * 2654435761 + salt * 40503) % 4294967296
        out.append((h / 4294967296.0 - 0.5) * scale)
    return torch.tensor(out, dtype=torch.float64).to(torch.float32)


def fmt(x):
    return "%.9g" % x


def make_batch(ids_list, types_list):
    seq = max(len(x) for x in ids_list)
    B = len(ids_list)
    ids = torch.zeros(B, seq, dtype=torch.long)
    types = torch.zeros(B, seq, dtype=torch.long)
    mask = torch.zeros(B, seq, dtype=torch.long)
    for i, (a, t) in enumerate(zip(ids_list, types_list)):
        ids[i, :len(a)] = torch.tensor(a)
        types[i, :len(a)] = torch.tensor(t)
        mask[i, :len(a)] = 1
    return ids, types, mask


def prepare(model, bert, head, tune, top_k, m, act, placement, hash_init):
    """Readies MODEL (whose encoder is BERT, whose head's parameters are named HEAD...) for a
    case: adds the adapters (--tune adapter), draws the initial values of the adapters and the
    head, marks the trained set. Returns (inits, params): the (name, salt, scale) of every drawn
    tensor (salt 0: drawn from torch's generator) and the (name, parameter) trained."""
    if tune == "adapter":
        add_adapters(bert, m, act, placement)
    inits = []
    with torch.no_grad():
        for n, p in model.named_parameters():
            sd_ = 0.05 if ".adapters." in n else 0.2 if n.startswith(head) else 0
            if not sd_:
                continue
            if hash_init:
                salt = len(inits) + 1
                p.copy_(hash_values(p.numel(), salt, 2 * sd_).reshape(p.shape))
                inits.append((n, salt, 2 * sd_))
            else:
                p.normal_(0.0, sd_)
                inits.append((n, 0, 0))
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(trainable(n, tune, top_k, bert.config.num_hidden_layers, head))
        if p.requires_grad:
            params.append((n, p))
    return inits, params


def write_inputs(f, case, ids, types, ids_list, answers, model, inits):
    """The case's header: the `case` line (CASE), the batch, the ANSWERS line (labels, targets,
    spans) and the initial values of INITS (from prepare())."""
    B, seq = ids.shape
    f.write(f"case {case}\n")
    f.write(f"batch {B} {seq}\n")
    f.write("ids " + " ".join(str(int(x)) for x in ids.flatten()) + "\n")
    f.write("types " + " ".join(str(int(x)) for x in types.flatten()) + "\n")
    f.write("lengths " + " ".join(str(len(x)) for x in ids_list) + "\n")
    f.write(answers + "\n")
    sd = dict(model.named_parameters())
    for n, salt, scale in inits:
        v = sd[n].detach().flatten()
        if salt:
            f.write(f"inithash {n} {v.numel()} {salt} {fmt(scale)}\n")
        else:
            f.write(f"init {n} {v.numel()} " + " ".join(fmt(x) for x in v.tolist()) + "\n")


def write_grads(f, name, loss, params, full_grads):
    """The gradient of every trained tensor (after loss.backward()): in full, or its norm and 8
    samples (its largest entry and 7 random ones)."""
    g = torch.Generator().manual_seed(5)
    for n, p in params:
        gr = p.grad.detach().flatten()
        if full_grads:
            f.write(f"grad {n} {gr.numel()} " + " ".join(fmt(x) for x in gr.tolist()) + "\n")
        else:
            idx = [int(gr.abs().argmax())]
            idx += torch.randint(0, gr.numel(), (7,), generator=g).tolist()
            norm = gr.double().norm().item()
            f.write(f"gnorm {n} {gr.numel()} {fmt(norm)} "
                    + " ".join(f"{i} {fmt(gr[i].item())}" for i in idx) + "\n")
    print(f"{name}: loss {loss.item():.6f}, {len(params)} trained tensors")


def write_steps(f, params, steps, lr, loss_of):
    """STEPS optimiser steps on PARAMS, LOSS_OF() computing the loss, and the `steps` line of
    the losses before each: torch.optim.AdamW (bias correction), weight decay 0.01 except
    LayerNorm and biases, global norm clip 1.0, linear warmup over int(0.1 * steps) then linear
    decay."""
    decay = [p for n, p in params if not ("LayerNorm" in n or n.endswith(".bias"))]
    no_decay = [p for n, p in params if "LayerNorm" in n or n.endswith(".bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-6)
    warm = int(steps * 0.1)

    def lam(s):
        if s < warm:
            return s / max(1, warm)
        return max(0.0, (steps - s) / max(1, steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        sched.step()
    f.write(f"steps {steps} {fmt(lr)} 1 0.01 1.0 " + " ".join(fmt(x) for x in losses) + "\n")
    print(f"  {steps} AdamW steps: loss {losses[0]:.6f} -> {losses[-1]:.6f}")


def run_case(f, name, model_dir, ids_list, types_list, labels, targets, tune, top_k=0, m=8,
             act="gelu", placement="both", num_labels=2, full_grads=True, steps=0, lr=1e-3,
             seed=0, hash_init=False):
    torch.manual_seed(seed)
    model = Ref(model_dir, num_labels).eval()  # eval: dropout off
    inits, params = prepare(model, model.bert, "classifier.", tune, top_k, m, act, placement,
                            hash_init)
    ids, types, mask = make_batch(ids_list, types_list)
    lab = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    tgt = torch.tensor(targets, dtype=torch.float32) if targets is not None else None
    if lab is not None:
        answers = "labels " + " ".join(str(int(x)) for x in lab)
    else:
        answers = "targets " + " ".join(fmt(x) for x in tgt.tolist())
    write_inputs(f, f"{name} {tune} {top_k} {m} {act} {placement} {num_labels}", ids, types,
                 ids_list, answers, model, inits)

    loss, _ = model(ids, types, mask, lab, tgt)
    loss.backward()
    f.write(f"loss {fmt(loss.item())}\n")
    write_grads(f, name, loss, params, full_grads)
    if steps:
        write_steps(f, params, steps, lr, lambda: model(ids, types, mask, lab, tgt)[0])
    f.write("end\n")


@contextlib.contextmanager
def tiny_bert(prefix):
    """A temporary copy of tests/golden/tiny-bert/plain that from_pretrained() loads."""
    src = os.path.join(ROOT, "tests/golden/tiny-bert/plain")
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        shutil.copy(f"{src}/config.json", f"{tmp}/config.json")
        shutil.copy(f"{src}/model.st", f"{tmp}/model.safetensors")
        yield tmp
    finally:
        shutil.rmtree(tmp)


def main(writers, names):
    """Runs WRITERS (functions writing golden files into OUT), then lists the files NAMES."""
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for write in writers:
        write()
    for n in names:
        print(n, os.path.getsize(f"{OUT}/{n}"), "bytes")


def tiny():
    with tiny_bert("petl-grad-") as tmp:
        g = torch.Generator().manual_seed(11)
        lens = [7, 3, 12, 5]
        ids_list, types_list = [], []
        for n in lens:
            ids_list.append([2] + torch.randint(3, 99, (n - 1,), generator=g).tolist())
            na = max(1, n // 2)
            types_list.append([0] * na + [1] * (n - na))
        labels3 = [0, 2, 1, 2]
        labels2 = [1, 0, 0, 1]
        targets = [0.5, 3.0, -1.25, 2.0]
        with open(f"{OUT}/tiny.golden", "w") as f:
            f.write("# generated by scripts/reference/gen-grad-golden.py: tiny-bert/plain\n")
            run_case(f, "adapter", tmp, ids_list, types_list, labels3, None, "adapter", m=8,
                     act="gelu", num_labels=3, steps=20, lr=1e-2, seed=1)
            run_case(f, "adapter_ffn_swish_regression", tmp, ids_list, types_list, None,
                     targets, "adapter", m=5, act="swish", placement="ffn", num_labels=1,
                     seed=2)
            run_case(f, "adapter_relu", tmp, ids_list, types_list, labels2, None, "adapter",
                     m=4, act="relu", num_labels=2, seed=3)
            run_case(f, "full", tmp, ids_list, types_list, labels2, None, "full", seed=4)
            run_case(f, "layernorm", tmp, ids_list, types_list, labels3, None, "layernorm",
                     num_labels=3, seed=5)
            run_case(f, "head", tmp, ids_list, types_list, labels2, None, "head", seed=6)
            run_case(f, "top1", tmp, ids_list, types_list, labels2, None, "top", top_k=1,
                     seed=7)


def minilm():
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    with open(os.path.join(DATA_DIR, "glue/SST-2/dev.tsv"), encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh][1:]
    rows = rows[:8]
    ids_list, types_list, labels = [], [], []
    for text, label in rows:
        enc = tok(text, truncation=True, max_length=128)
        ids_list.append(enc["input_ids"])
        types_list.append(enc["token_type_ids"])
        labels.append(int(label))
    with open(f"{OUT}/minilm.golden", "w") as f:
        f.write("# generated by scripts/reference/gen-grad-golden.py: all-MiniLM-L6-v2, "
                "8 SST-2 dev sentences\n")
        run_case(f, "minilm_adapter", MODEL_DIR, ids_list, types_list, labels, None, "adapter",
                 m=16, act="gelu", num_labels=2, full_grads=False, steps=20, lr=1e-3, seed=8,
                 hash_init=True)


if __name__ == "__main__":
    main((tiny, minilm), ("tiny.golden", "minilm.golden"))
