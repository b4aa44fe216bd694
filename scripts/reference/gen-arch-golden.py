#!/usr/bin/env python3
"""Writes a tiny random model of every encoder family besides BERT, and its forward golden file,
from HuggingFace transformers' own model classes.

Usage: .venv-ref/bin/python scripts/reference/gen-arch-golden.py [ARCH ...]
       (default: every ARCH of the table below)

Every model: hidden 32, 2 layers, 4 heads, intermediate 37, vocab 99, max_position_embeddings
64, gelu (exact erf form), built with the family's config class, seeded, every parameter then
perturbed by normal(0, 0.05) noise (random init leaves biases at zero, LayerNorm gains at one
and padding rows at zero: a tensor read from the wrong place must show in the outputs).

Outputs (all under tests/golden/tiny-ARCH/):
  config.json      the config as the family's save_pretrained() writes it
  model.st         model.safetensors renamed (nothing in the repository looks like weights; the
                   tests link it into a temporary model folder), F32
  forward.golden   the reference outputs on 12 random sequences (lengths 1 .. 60, in padded
                   batches of 4, ids 2 .. 98 so that no real token is a padding id, padded with
                   the config's pad_token_id), computed by loading that very folder back with
                   the family's from_pretrained() (eval, no_grad, eager attention, F32), in
                   gen-forward-golden.py's PETLFWD1 format (ids, type ids, pooler when the
                   family has one, last hidden state of the first token, masked mean)

  tiny-roberta      RobertaModel, pad_token_id 1 (position ids pad+1, pad+2, ... from the
                    non-padding tokens: the reference computes them from the ids), type vocab 1
                    (type ids all 0), pooler; keys as RobertaModel.save_pretrained() writes
                    them: no prefix
  tiny-xlm-roberta  XLMRobertaModel (model_type xlm-roberta), otherwise as tiny-roberta, with
                    every key under the "roberta." prefix, as the base of a
                    XLMRobertaForSequenceClassification checkpoint stores it (so both prefix
                    styles of the family are covered)
  tiny-distilbert   DistilBertModel (dim 32, n_layers 2, n_heads 4, hidden_dim 37, learned
                    positions: sinusoidal_pos_embds false), no token types (type ids all 0),
                    no pooler (has_pooler 0)
  tiny-electra      ElectraModel (the discriminator's base) with embedding_size 16: embeddings of
                    width 16, their LayerNorm, then embeddings_project 16 -> 32; token types as
                    BERT (pairs: types 0 then 1); no pooler
  tiny-mpnet        MPNetModel, relative_attention_num_buckets 32, pad_token_id 1 (positions as
                    RoBERTa's), one relative position bias encoder.relative_attention_bias
                    [32, heads] shared by every layer, pooler, no token types; the lengths reach
                    60 so that distances past the 8 exact buckets are exercised
  tiny-mpnet/relbucket.txt
                    one line "d bucket" for every relative distance d = key position - query
                    position in -63 .. 63: the bucket of transformers'
                    MPNetEncoder.relative_position_bucket (num_buckets 32, max_distance 128),
                    computed as the reference computes it (its log in float32)

forward.golden format: see gen-forward-golden.py (PETLFWD1).
"""
import json
import os
import random
import shutil
import struct
import sys

import torch
from safetensors.torch import save_file
from transformers import (DistilBertConfig, DistilBertModel, ElectraConfig, ElectraModel,
                          MPNetConfig, MPNetModel, RobertaConfig, RobertaModel,
                          XLMRobertaConfig, XLMRobertaModel)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/golden")

COMMON = dict(vocab_size=99, max_position_embeddings=64)
BERTLIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                hidden_act="gelu", **COMMON)


def roberta_config():
    return RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                         **BERTLIKE)


def xlmr_config():
    return XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                            **BERTLIKE)


def distilbert_config():
    return DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, activation="gelu",
                            sinusoidal_pos_embds=False, pad_token_id=0, **COMMON)


def electra_config():
    return ElectraConfig(embedding_size=16, type_vocab_size=2, pad_token_id=0, **BERTLIKE)


def mpnet_config():
    return MPNetConfig(relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0,
                       eos_token_id=2, **BERTLIKE)


# name: (config maker, model class, key prefix in the saved file, petl's name prefix, pooler,
#        token types used, first-token id, seed)
ARCHS = {
    "roberta": (roberta_config, RobertaModel, "", "roberta.", True, False, 0, 21),
    "xlm-roberta": (xlmr_config, XLMRobertaModel, "roberta.", "roberta.", True, False, 0, 22),
    "distilbert": (distilbert_config, DistilBertModel, "", "distilbert.", False, False, 2, 23),
    "electra": (electra_config, ElectraModel, "", "electra.", False, True, 2, 24),
    "mpnet": (mpnet_config, MPNetModel, "", "mpnet.", True, False, 0, 25),
}
LENGTHS = [2, 3, 5, 8, 13, 21, 34, 60, 7, 1, 17, 45]


def arch(name):
    """The table row of ARCH NAME as a dict."""
    mk, cls, file_prefix, prefix, pool, types, first, seed = ARCHS[name]
    cfg = mk()
    return dict(name=name, config=cfg, cls=cls, file_prefix=file_prefix, prefix=prefix,
                pooler=pool, types=types, first=first, seed=seed,
                pad=cfg.pad_token_id, dir=os.path.join(OUT, f"tiny-{name}"))


def load(a, folder):
    """The family's base model read back from FOLDER by from_pretrained(), F32, eager attention,
    eval; refuses a folder whose keys the reference does not all use, or that leaves a tensor
    of the model uninitialised."""
    model, info = a["cls"].from_pretrained(folder, dtype=torch.float32,
                                           attn_implementation="eager",
                                           output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"tiny-{a['name']}: from_pretrained() reports {bad}")
    return model.eval()


def run_batches(model, ids_list, types_list, batch, pad, pass_types):
    """Reference outputs per item in padded batches (ids PAD, mask 0): pooler (or None), last
    hidden state of the first token, attention-masked mean."""
    pooled, cls, mean = [], [], []
    for s in range(0, len(ids_list), batch):
        ids_b, types_b = ids_list[s:s + batch], types_list[s:s + batch]
        seq = max(len(x) for x in ids_b)
        ids = torch.full((len(ids_b), seq), pad, dtype=torch.long)
        types = torch.zeros(len(ids_b), seq, dtype=torch.long)
        mask = torch.zeros(len(ids_b), seq, dtype=torch.long)
        for i, (a, t) in enumerate(zip(ids_b, types_b)):
            ids[i, :len(a)] = torch.tensor(a)
            types[i, :len(a)] = torch.tensor(t)
            mask[i, :len(a)] = 1
        kw = {"token_type_ids": types} if pass_types else {}
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, **kw)
        h = out.last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        mean += list((h * m).sum(1) / m.sum(1))
        cls += list(h[:, 0])
        p = getattr(out, "pooler_output", None)
        pooled += list(p) if p is not None else [None] * len(ids_b)
    return pooled, cls, mean


def write_golden(path, ids_list, types_list, pooled, cls, mean, hidden):
    """PETLFWD1 (gen-forward-golden.py)."""
    has_pool = pooled[0] is not None
    with open(path, "wb") as f:
        f.write(b"PETLFWD1")
        f.write(struct.pack("<4i", len(ids_list), hidden, int(has_pool), 0))
        for i in range(len(ids_list)):
            n = len(ids_list[i])
            f.write(struct.pack(f"<i{n}i{n}i", n, *ids_list[i], *types_list[i]))
            for v in ([pooled[i]] if has_pool else []) + [cls[i], mean[i]]:
                f.write(struct.pack(f"<{hidden}f", *v.tolist()))


def make_model(a):
    """The tiny random model of A (its base class, pooler included where the family has one),
    every parameter perturbed."""
    torch.manual_seed(a["seed"])
    model = a["cls"](a["config"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save(a, model):
    """Writes config.json + model.safetensors of MODEL into A's folder (keys under A's file
    prefix), replacing what was there."""
    d = a["dir"]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    if not a["file_prefix"]:
        model.save_pretrained(d)
    else:
        # A ForSequenceClassification checkpoint's base keys: the prefix on every key (its
        # own base would have no pooler; this one keeps it).
        model.config.architectures = ["XLMRobertaForSequenceClassification"]
        model.config.save_pretrained(d)
        sd = {a["file_prefix"] + k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, f"{d}/model.safetensors", metadata={"format": "pt"})
    for extra in os.listdir(d):
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, extra))
    os.chmod(f"{d}/model.safetensors", 0o644)


def inputs(a):
    """12 random sequences: ids 2 .. 98 after the family's first token (never a padding id);
    type ids 0 then 1 for families with token types, else all 0."""
    rng = random.Random(a["seed"] * 1000 + 7)
    ids_list, types_list = [], []
    for n in LENGTHS:
        ids = [a["first"]] + [rng.randrange(2, 99) for _ in range(n - 1)]
        if a["types"]:
            na = rng.randrange(1, n + 1)
            types = [0] * na + [1] * (n - na)
        else:
            types = [0] * n
        ids_list.append(ids)
        types_list.append(types)
    return ids_list, types_list


def relbucket():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    d = torch.arange(-63, 64, dtype=torch.long)
    b = MPNetEncoder.relative_position_bucket(d, num_buckets=32, max_distance=128)
    with open(f"{OUT}/tiny-mpnet/relbucket.txt", "w") as f:
        for x, y in zip(d.tolist(), b.tolist()):
            f.write(f"{x} {y}\n")
    # The same buckets in double precision: a C version computing its log in double would
    # differ wherever the two disagree.
    import math
    differ = []
    for x, y in zip(d.tolist(), b.tolist()):
        n = abs(x)
        r = 16 if x > 0 else 0
        v = n if n < 8 else min(15, 8 + int(math.log(n / 8) / math.log(128 / 8) * 8))
        if r + v != y:
            differ.append((x, y, r + v))
    print(f"tiny-mpnet/relbucket.txt: 127 distances; double-precision log differs at {differ}")


def one(name):
    a = arch(name)
    model = make_model(a)
    save(a, model)
    ref = load(a, a["dir"])
    ids_list, types_list = inputs(a)
    pooled, cls, mean = run_batches(ref, ids_list, types_list, 4, a["pad"], a["types"])
    if a["pooler"] != (pooled[0] is not None):
        raise SystemExit(f"tiny-{name}: pooler expected {a['pooler']}")
    hidden = 32
    write_golden(f"{a['dir']}/forward.golden", ids_list, types_list, pooled, cls, mean, hidden)
    os.replace(f"{a['dir']}/model.safetensors", f"{a['dir']}/model.st")
    with open(f"{a['dir']}/config.json") as f:
        mt = json.load(f)["model_type"]
    print(f"tiny-{name}: model_type {mt}, {os.path.getsize(a['dir'] + '/model.st')} bytes, "
          f"{sum(p.numel() for p in ref.parameters())} parameters")


if __name__ == "__main__":
    torch.set_num_threads(2)
    names = sys.argv[1:] or list(ARCHS)
    for n in names:
        if n not in ARCHS:
            raise SystemExit(f"unknown arch {n} (known: {' '.join(ARCHS)})")
        one(n)
    if "mpnet" in names:
        relbucket()
