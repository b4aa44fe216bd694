#!/usr/bin/env python3
"""Writes the gradient golden files of the encoder families besides BERT from PyTorch autograd
on transformers' own base models (the tiny random ones of gen-arch-golden.py) with the Houlsby
adapters, head, trainable sets, cases, file writers and number format of gen-grad-golden.py.

Usage: .venv-ref/bin/python scripts/reference/gen-arch-grad-golden.py [ARCH ...]
       (default: every ARCH of gen-arch-golden.py; run that first)

The reference model (dropout off: eval mode), for ARCH with petl's name prefix P:
    P = the family's base model (eager attention) loaded from tests/golden/tiny-ARCH, so that
    every parameter is named P + its checkpoint key, as petl names it
    adapters A(h) = h + adapter_up(act(adapter_down.0(h))) at the two places of the paper, each
    registered as a submodule `adapters.petl` (AdapterHub's key names):
      roberta, xlm-roberta, electra: exactly BERT's (RobertaSelfOutput / RobertaOutput,
        ElectraSelfOutput / ElectraOutput and their XLM-R twins get gen-grad-golden.py's
        forward: h = dropout(dense(x)); h = A(h); LayerNorm(h + residual)), so
        P.encoder.layer.L.attention.output.adapters.petl.* and P.encoder.layer.L.output...
      distilbert: on the attention output after out_lin, before the residual and sa_layer_norm
        (distilbert.transformer.layer.L.attention.adapters.petl.*), and on the FFN output after
        lin2 and its dropout, before the residual and output_layer_norm (...layer.L.ffn.adapters
        .petl.*); forward hooks on out_lin and on the FFN's dropout
      mpnet: on the attention output after o and the attention's dropout, before the residual
        and attention.LayerNorm (mpnet.encoder.layer.L.attention.adapters.petl.*; a forward
        hook on attention.dropout), and BERT's on MPNetOutput (...layer.L.output.adapters.petl.*)
    head: classifier = Linear(H, num_labels) on the pooler output where the family has a pooler
    (roberta, xlm-roberta, mpnet), else on the first token's last hidden state (distilbert,
    electra); losses as gen-grad-golden.py (cross entropy, or MSE for one label).
    Token types: electra as BERT (0 then 1); the others all 0 (not passed to the reference).
    Padding: the config's pad_token_id (RoBERTa and MPNet derive positions from it); real ids
    are 3 .. 98 after the family's first token.
Trainable sets as petl's --tune: adapter (adapters + every LayerNorm, the embeddings' included,
DistilBERT's sa_layer_norm / output_layer_norm too + head), layernorm (LayerNorms + head), head
(classifier), top:K (the top K layers + the pooler where there is one + head), full (every
parameter: ELECTRA's embeddings_project, MPNet's shared encoder.relative_attention_bias, the
pooler). AdamW steps as gen-grad-golden.py; weight decay on the rank-2 tensors (petl's rule; for
BERT it is gen-grad-golden.py's "not LayerNorm, not bias").

Outputs: tests/golden/grad/tiny-ARCH.golden, the format and cases of tiny.golden (adapter with
20 AdamW steps, adapter_ffn_swish_regression, adapter_relu, full, layernorm, head, top1; every
trained gradient in full).
"""
import importlib.util
import os
import shutil
import sys
import tempfile

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


G = _load("gen_grad_golden", "gen-grad-golden.py")   # patches BertSelfOutput / BertOutput
A = _load("gen_arch_golden", "gen-arch-golden.py")
OUT = G.OUT
fmt = G.fmt


def base_name(a):
    return a["prefix"].rstrip(".")


class ArchRef(nn.Module):
    def __init__(self, a, folder, num_labels):
        super().__init__()
        self.a = a
        self.add_module(base_name(a), A.load(a, folder))
        self.classifier = nn.Linear(self.base().config.hidden_size, num_labels)
        self.num_labels = num_labels

    def base(self):
        return getattr(self, base_name(self.a))

    def forward(self, ids, types, mask, labels=None, targets=None):
        kw = {"token_type_ids": types} if self.a["types"] else {}
        out = self.base()(input_ids=ids, attention_mask=mask, **kw)
        x = out.pooler_output if self.a["pooler"] else out.last_hidden_state[:, 0]
        logits = self.classifier(x)
        if self.num_labels == 1:
            loss = nn.functional.mse_loss(logits.squeeze(-1), targets)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        return loss, logits


def layers(a, base):
    return base.transformer.layer if a["name"] == "distilbert" else base.encoder.layer


def patch_bertlike(a, base):
    """Gives the classes of BASE's BERT-shaped output blocks (dense, dropout, LayerNorm of the sum
    with the residual) gen-grad-golden.py's forward, which applies `adapters.petl` where a block
    has one. Which blocks: roberta / xlm-roberta / electra both, mpnet the FFN output,
    distilbert none."""
    if a["name"] == "distilbert":
        return
    for layer in layers(a, base):
        sites = [layer.output]
        if a["name"] in ("roberta", "xlm-roberta", "electra"):
            sites.append(layer.attention.output)
        for s in sites:
            type(s).forward = G.self_output_forward


def hook(site):
    """A forward hook that passes a module's output through SITE.adapters["petl"]."""
    def h(_mod, _inp, out):
        return site.adapters["petl"](out)
    return h


def add_adapters(a, base, m, act, placement):
    d = base.config.hidden_size
    for layer in layers(a, base):
        if a["name"] == "distilbert":
            ffn_site, att_site = layer.ffn, layer.attention
            ffn_at, att_at = layer.ffn.dropout, layer.attention.out_lin
        elif a["name"] == "mpnet":
            ffn_site, att_site = layer.output, layer.attention
            ffn_at, att_at = None, layer.attention.dropout
        else:
            ffn_site, att_site = layer.output, layer.attention.output
            ffn_at, att_at = None, None
        sites = [(ffn_site, ffn_at)]
        if placement == "both":
            sites.append((att_site, att_at))
        for s, at in sites:
            s.adapters = nn.ModuleDict({"petl": G.Adapter(d, m, act)})
            if at is not None:
                at.register_forward_hook(hook(s))


def is_layernorm(name):
    return "LayerNorm" in name or "layer_norm" in name


def trainable(a, name, tune, top_k, num_layers):
    if tune == "full" or name.startswith("classifier."):
        return True
    if tune == "head":
        return False
    if tune == "adapter":
        return ".adapters." in name or is_layernorm(name)
    if tune == "layernorm":
        return is_layernorm(name)
    if tune == "top":
        p = a["prefix"]
        if name.startswith(p + "pooler."):
            return True
        lp = p + ("transformer.layer." if a["name"] == "distilbert" else "encoder.layer.")
        if name.startswith(lp):
            return int(name[len(lp):].split(".")[0]) >= num_layers - top_k
        return False
    raise ValueError(tune)


def prepare(model, a, tune, top_k, m, act, placement):
    """gen-grad-golden.py's prepare() for ARCH A: adapters (--tune adapter), initial values of
    the adapters (normal sd 0.05) and the classifier (sd 0.2) from torch's generator, the trained
    set. Returns (inits, params)."""
    base = model.base()
    if tune == "adapter":
        add_adapters(a, base, m, act, placement)
    inits = []
    with torch.no_grad():
        for n, p in model.named_parameters():
            sd_ = 0.05 if ".adapters." in n else 0.2 if n.startswith("classifier.") else 0
            if sd_:
                p.normal_(0.0, sd_)
                inits.append((n, 0, 0))
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(trainable(a, n, tune, top_k, base.config.num_hidden_layers))
        if p.requires_grad:
            params.append((n, p))
    return inits, params


def make_batch(ids_list, types_list, pad):
    seq = max(len(x) for x in ids_list)
    B = len(ids_list)
    ids = torch.full((B, seq), pad, dtype=torch.long)
    types = torch.zeros(B, seq, dtype=torch.long)
    mask = torch.zeros(B, seq, dtype=torch.long)
    for i, (x, t) in enumerate(zip(ids_list, types_list)):
        ids[i, :len(x)] = torch.tensor(x)
        types[i, :len(x)] = torch.tensor(t)
        mask[i, :len(x)] = 1
    return ids, types, mask


def write_steps(f, params, steps, lr, loss_of):
    """gen-grad-golden.py's write_steps() with the decay set chosen by rank (rank-2 tensors
    decay; biases and LayerNorms, whatever the family calls them, do not)."""
    decay = [p for _, p in params if p.dim() >= 2]
    no_decay = [p for _, p in params if p.dim() < 2]
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


def run_case(f, a, folder, name, ids_list, types_list, labels, targets, tune, top_k=0, m=8,
             act="gelu", placement="both", num_labels=2, steps=0, lr=1e-3, seed=0):
    torch.manual_seed(seed)
    model = ArchRef(a, folder, num_labels).eval()
    inits, params = prepare(model, a, tune, top_k, m, act, placement)
    ids, types, mask = make_batch(ids_list, types_list, a["pad"])
    lab = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    tgt = torch.tensor(targets, dtype=torch.float32) if targets is not None else None
    if lab is not None:
        answers = "labels " + " ".join(str(int(x)) for x in lab)
    else:
        answers = "targets " + " ".join(fmt(x) for x in tgt.tolist())
    G.write_inputs(f, f"{name} {tune} {top_k} {m} {act} {placement} {num_labels}", ids, types,
                   ids_list, answers, model, inits)
    loss, _ = model(ids, types, mask, lab, tgt)
    loss.backward()
    f.write(f"loss {fmt(loss.item())}\n")
    G.write_grads(f, f"tiny-{a['name']} {name}", loss, params, True)
    if steps:
        write_steps(f, params, steps, lr, lambda: model(ids, types, mask, lab, tgt)[0])
    f.write("end\n")


def check_patch(a, folder, ids, types, mask):
    """Patches the BERT-shaped blocks' classes, proving on the model without adapters that the
    patched forward computes what the family's own did."""
    ref = ArchRef(a, folder, 2).eval()
    with torch.no_grad():
        before = ref(ids, types, mask, torch.zeros(ids.shape[0], dtype=torch.long))[1]
        patch_bertlike(a, ref.base())
        after = ref(ids, types, mask, torch.zeros(ids.shape[0], dtype=torch.long))[1]
    if not torch.equal(before, after):
        raise SystemExit(f"tiny-{a['name']}: the patched output blocks change the outputs")


def one(name):
    a = A.arch(name)
    tmp = tempfile.mkdtemp(prefix=f"petl-grad-{name}-")
    try:
        shutil.copy(f"{a['dir']}/config.json", f"{tmp}/config.json")
        shutil.copy(f"{a['dir']}/model.st", f"{tmp}/model.safetensors")
        g = torch.Generator().manual_seed(11)
        ids_list, types_list = [], []
        for n in [7, 3, 12, 5]:
            ids_list.append([a["first"]] + torch.randint(3, 99, (n - 1,), generator=g).tolist())
            na = max(1, n // 2)
            types_list.append([0] * na + [1] * (n - na) if a["types"] else [0] * n)
        check_patch(a, tmp, *make_batch(ids_list, types_list, a["pad"]))
        labels3 = [0, 2, 1, 2]
        labels2 = [1, 0, 0, 1]
        targets = [0.5, 3.0, -1.25, 2.0]
        with open(f"{OUT}/tiny-{name}.golden", "w") as f:
            f.write(f"# generated by scripts/reference/gen-arch-grad-golden.py: tiny-{name}\n")
            run_case(f, a, tmp, "adapter", ids_list, types_list, labels3, None, "adapter", m=8,
                     act="gelu", num_labels=3, steps=20, lr=1e-2, seed=1)
            run_case(f, a, tmp, "adapter_ffn_swish_regression", ids_list, types_list, None,
                     targets, "adapter", m=5, act="swish", placement="ffn", num_labels=1,
                     seed=2)
            run_case(f, a, tmp, "adapter_relu", ids_list, types_list, labels2, None, "adapter",
                     m=4, act="relu", num_labels=2, seed=3)
            run_case(f, a, tmp, "full", ids_list, types_list, labels2, None, "full", seed=4)
            run_case(f, a, tmp, "layernorm", ids_list, types_list, labels3, None, "layernorm",
                     num_labels=3, seed=5)
            run_case(f, a, tmp, "head", ids_list, types_list, labels2, None, "head", seed=6)
            run_case(f, a, tmp, "top1", ids_list, types_list, labels2, None, "top", top_k=1,
                     seed=7)
    finally:
        shutil.rmtree(tmp)
    print(f"tiny-{name}.golden", os.path.getsize(f"{OUT}/tiny-{name}.golden"), "bytes")


if __name__ == "__main__":
    torch.set_num_threads(2)
    names = sys.argv[1:] or list(A.ARCHS)
    for n in names:
        if n not in A.ARCHS:
            raise SystemExit(f"unknown arch {n} (known: {' '.join(A.ARCHS)})")
        one(n)
