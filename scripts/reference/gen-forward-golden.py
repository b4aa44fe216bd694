#!/usr/bin/env python3
"""Writes the golden files of the encoder tests from HuggingFace transformers' BertModel (and,
with --mpnet, MPNetModel).

Usage: .venv-ref/bin/python scripts/reference/gen-forward-golden.py [MODEL_DIR] [DATA_DIR]
       (defaults: models/all-MiniLM-L6-v2 and ../shared/data beside the repository)
       .venv-ref/bin/python scripts/reference/gen-forward-golden.py --mpnet [MODEL_DIR] [DATA_DIR]
       (default model: models/all-mpnet-base-v2, from scripts/fetch-model all-mpnet-base-v2;
       writes forward_mpnet.golden only)

Outputs (all under tests/golden/):
  forward_minilm.golden          64 GLUE sentences / pairs of varied length (2 .. 128 tokens):
                              ids, token types and the reference pooler output, last hidden
                              state of [CLS] and attention-masked mean of the last hidden state,
                              computed in PADDED batches of 16 (float32, eval, no_grad).
  embed_minilm_input.jsonl    a few of them as `petl embed` input lines (tests/cli_embed.sh)
  embed_minilm_expected.jsonl the reference outputs of those lines, as `petl embed` writes them
  tiny-bert/VARIANT/          a tiny random BERT (hidden 32, 2 layers, 4 heads, vocab 99) saved
                              in three key / dtype variants, each with config.json,
                              model.st (model.safetensors renamed, so that nothing in the
                              repository looks like model weights; the tests link it into
                              a temporary model folder) and forward.golden (its reference outputs on
                              random ids, computed by loading that very folder with
                              BertModel.from_pretrained, so the reference itself proves how the
                              variant's keys and dtype are read):
                                plain       F32, no prefix, LayerNorm weight/bias, pooler
                                prefixed    F16, "bert." prefix, LayerNorm gamma/beta, an I64
                                            bert.embeddings.position_ids buffer, a cls.* head
                                nopool      BF16, no prefix, no pooler
  forward_mpnet.golden        (--mpnet) the same 64 GLUE items tokenized by the MPNet folder's
                              own tokenizer (AutoTokenizer: <s> A </s></s> B </s>; it gives no
                              token types, so the file's are all 0), MPNetModel's outputs
                              (pooler, cls, mean) in padded batches of 16, padded with the
                              tokenizer's pad id (MPNet derives positions from it)

forward*.golden format (little-endian):
  char[8]  magic "PETLFWD1"
  int32    n (sentences), hidden, has_pooler (0/1), reserved (0)
  n times: int32 len; int32 ids[len]; int32 type_ids[len];
           float32 pooler[hidden] (only when has_pooler); float32 cls[hidden]; float32 mean[hidden]
"""
import json
import os
import random
import struct
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPNET = len(sys.argv) > 1 and sys.argv[1] == "--mpnet"
ARGS = sys.argv[2:] if MPNET else sys.argv[1:]
MODEL_DIR = ARGS[0] if ARGS else os.path.join(
    ROOT, "models/all-mpnet-base-v2" if MPNET else "models/all-MiniLM-L6-v2")
DATA_DIR = ARGS[1] if len(ARGS) > 1 else os.path.join(ROOT, "../shared/data")
OUT = os.path.join(ROOT, "tests/golden")
MAX_LEN = 128


def read_tsv(path, header):
    with open(path, encoding="utf-8-sig") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return rows[1:] if header else rows


def pick_texts():
    """64 items: 16 SST-2, 14 CoLA singles; 12 MRPC, 10 RTE, 12 STS-B pairs. Each group mixes
    the shortest, the longest and random items, so lengths range from a few tokens to the
    128-token truncation limit; the order is shuffled so padded batches mix lengths."""
    g = os.path.join(DATA_DIR, "glue")
    rng = random.Random(1234)
    groups = [
        ([(r[0], None) for r in read_tsv(f"{g}/SST-2/dev.tsv", True)], 16),
        ([(r[3], None) for r in read_tsv(f"{g}/CoLA/dev.tsv", False)], 14),
        ([(r[3], r[4]) for r in read_tsv(f"{g}/MRPC/dev.tsv", True)], 12),
        ([(r[1], r[2]) for r in read_tsv(f"{g}/RTE/dev.tsv", True)], 10),
        ([(r[7], r[8]) for r in read_tsv(f"{g}/STS-B/dev.tsv", True)], 12),
    ]
    items = []
    for rows, k in groups:
        by_len = sorted(rows, key=lambda r: len(r[0]) + len(r[1] or ""))
        chosen = by_len[:2] + by_len[-2:]
        rest = [r for r in rows if r not in chosen]
        chosen += rng.sample(rest, k - 4)
        items += chosen
    rng.shuffle(items)
    return items


def run_batches(model, ids_list, types_list, batch, pad=0, pass_types=True):
    """Reference outputs per item, computed in padded batches (pad id PAD, mask 0); token types
    are passed only where PASS_TYPES (MPNet has none)."""
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
        pooled += list(out.pooler_output) if out.pooler_output is not None else [None] * len(ids_b)
    return pooled, cls, mean


def write_golden(path, ids_list, types_list, pooled, cls, mean, hidden):
    has_pool = pooled[0] is not None
    with open(path, "wb") as f:
        f.write(b"PETLFWD1")
        f.write(struct.pack("<4i", len(ids_list), hidden, int(has_pool), 0))
        for i in range(len(ids_list)):
            n = len(ids_list[i])
            f.write(struct.pack(f"<i{n}i{n}i", n, *ids_list[i], *types_list[i]))
            vecs = ([pooled[i]] if has_pool else []) + [cls[i], mean[i]]
            for v in vecs:
                f.write(struct.pack(f"<{hidden}f", *v.tolist()))


def fmt_vec(v):
    return "[" + ", ".join("%.9g" % x for x in v.tolist()) + "]"


def minilm():
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = BertModel.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    items = pick_texts()
    ids_list, types_list = [], []
    for a, b in items:
        enc = tok(a, b, truncation=True, max_length=MAX_LEN)
        ids_list.append(enc["input_ids"])
        types_list.append(enc["token_type_ids"])
    pooled, cls, mean = run_batches(model, ids_list, types_list, 16)
    hidden = model.config.hidden_size
    write_golden(f"{OUT}/forward_minilm.golden", ids_list, types_list, pooled, cls, mean, hidden)
    lens = sorted(len(x) for x in ids_list)
    print(f"forward_minilm.golden: {len(items)} items, lengths {lens[0]}..{lens[-1]}, "
          f"{sum(1 for x in lens if x == MAX_LEN)} truncated to {MAX_LEN}")

    # CLI lines: two singles and two pairs of plain ASCII text, none truncated.
    picks = [i for i, (a, b) in enumerate(items) if b is None and len(ids_list[i]) < 40][:2]
    picks += [i for i, (a, b) in enumerate(items) if b is not None and len(ids_list[i]) < 80][:2]
    with open(f"{OUT}/embed_minilm_input.jsonl", "w") as fi, \
            open(f"{OUT}/embed_minilm_expected.jsonl", "w") as fe:
        for i in picks:
            a, b = items[i]
            line = {"text": a} if b is None else {"text_a": a, "text_b": b}
            fi.write(json.dumps(line) + "\n")
            fe.write('{"pooler_output": %s, "cls": %s, "mean": %s}\n'
                     % (fmt_vec(pooled[i]), fmt_vec(cls[i]), fmt_vec(mean[i])))


def tiny():
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=32, type_vocab_size=2,
                     hidden_act="gelu")
    model = BertModel(cfg).eval()
    # Random init gives all-zero biases and unit LayerNorm gains; perturb every parameter so
    # that a bias or LayerNorm read from the wrong tensor shows up in the outputs.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    rng = random.Random(99)
    ids_list, types_list = [], []
    for n in [2, 3, 5, 8, 13, 21, 30, 32, 7, 1, 17, 25]:
        ids = [rng.randrange(1, 99) for _ in range(n)]
        na = rng.randrange(1, n + 1)
        ids_list.append(ids)
        types_list.append([0] * na + [1] * (n - na))

    variants = {
        "plain": (torch.float32, "", False, True),
        "prefixed": (torch.float16, "bert.", True, True),
        "nopool": (torch.bfloat16, "", False, False),
    }
    for name, (dtype, prefix, gamma_beta, pool) in variants.items():
        d = f"{OUT}/tiny-bert/{name}"
        os.makedirs(d, exist_ok=True)
        tensors = {}
        for k, v in sd.items():
            if k.startswith("pooler.") and not pool:
                continue
            if k == "embeddings.position_ids":
                continue
            if gamma_beta and "LayerNorm" in k:
                k = k.replace("LayerNorm.weight", "LayerNorm.gamma")
                k = k.replace("LayerNorm.bias", "LayerNorm.beta")
            tensors[prefix + k] = v.to(dtype).contiguous()
        if prefix:
            tensors[prefix + "embeddings.position_ids"] = torch.arange(32).unsqueeze(0)
            tensors["cls.predictions.bias"] = torch.zeros(99, dtype=dtype)
        save_file(tensors, f"{d}/model.safetensors", metadata={"format": "pt"})
        os.chmod(f"{d}/model.safetensors", 0o644)
        c = cfg.to_dict()
        keep = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
                "layer_norm_eps", "pad_token_id", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "model_type", "position_embedding_type"]
        with open(f"{d}/config.json", "w") as f:
            json.dump({k: c[k] for k in keep} | {"architectures": ["BertModel"]}, f, indent=2)
        # The reference reads the folder itself, with its dtype converted to float32.
        ref = BertModel.from_pretrained(d, dtype=torch.float32,
                                        add_pooling_layer=pool).eval()
        pooled, cls, mean = run_batches(ref, ids_list, types_list, 4)
        write_golden(f"{d}/forward.golden", ids_list, types_list, pooled, cls, mean, 32)
        os.replace(f"{d}/model.safetensors", f"{d}/model.st")
        print(f"tiny-bert/{name}: {os.path.getsize(d + '/model.st')} bytes")


def mpnet():
    from transformers import MPNetModel
    from safetensors import safe_open
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    with safe_open(os.path.join(MODEL_DIR, "model.safetensors"), "pt") as st:
        pool = any(("." + k).find(".pooler.") >= 0 for k in st.keys())
    model, info = MPNetModel.from_pretrained(MODEL_DIR, dtype=torch.float32,
                                             add_pooling_layer=pool, output_loading_info=True)
    if any(info.values()):
        raise SystemExit(f"forward_mpnet.golden: from_pretrained() reports {info}")
    model.eval()
    items = pick_texts()
    ids_list, types_list = [], []
    for a, b in items:
        enc = tok(a, b, truncation=True, max_length=MAX_LEN)
        ids_list.append(enc["input_ids"])
        types_list.append([0] * len(enc["input_ids"]))
    pooled, cls, mean = run_batches(model, ids_list, types_list, 16, tok.pad_token_id, False)
    hidden = model.config.hidden_size
    write_golden(f"{OUT}/forward_mpnet.golden", ids_list, types_list, pooled, cls, mean, hidden)
    lens = sorted(len(x) for x in ids_list)
    print(f"forward_mpnet.golden: {len(items)} items, lengths {lens[0]}..{lens[-1]}, "
          f"{sum(1 for x in lens if x == MAX_LEN)} truncated to {MAX_LEN}, pooler {pool}, "
          f"tokenizer {type(tok).__name__}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    if MPNET:
        mpnet()
    else:
        minilm()
        tiny()
