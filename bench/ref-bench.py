#!/usr/bin/env python3
"""The reference side of bench/train-bench: the same measurements as bench/petl-bench.c, run by
PyTorch + transformers + the AdapterHub `adapters` library, printed as one JSON object.

    ref-bench.py --model DIR --mode train|infer|latency [--tune adapter|full]
                 [--batches FILE | --batch 32 --seq 128] [--steps N] [--warmup N] [--threads N]

The model is transformers' AutoModelForSequenceClassification (2 labels: BertForSequenceClassification, MPNetForSequenceClassification, ...) loaded from the same folder.
--tune adapter: adapters.init(model) and a DoubleSeqBnConfig (the Houlsby configuration: after the
attention output and after the feed-forward output) with bottleneck 64 and GELU, the adapters +
every LayerNorm + the classifier trained (requires_grad set as petl trains them); --tune full:
every parameter. One training step = forward with labels (dropout on) + loss.backward() +
clip_grad_norm_(1.0) + torch.optim.AdamW step (the library default implementation) + zero_grad.
infer / latency: forward under torch.inference_mode() with the adapters active, no dropout.

Batches come from the same file as petl's (one batch per line, the real token count of each
row), padded to the batch's longest row with an attention mask; ids random per batch. Peak memory
is resource.getrusage's ru_maxrss (the kernel's high-water mark, the Python interpreter and
imports included, as a user of the stack pays them).
"""
import argparse
import json
import math
import resource
import time

import torch


def read_batches(a):
    if not a.batches:
        return [[a.seq] * a.batch]
    out = []
    with open(a.batches) as f:
        for line in f:
            lens = [int(x) for x in line.split()]
            if lens:
                out.append(lens)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", default="train", choices=["train", "infer", "latency"])
    ap.add_argument("--tune", default="adapter", choices=["adapter", "full"])
    ap.add_argument("--batches")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(42)
    from transformers import AutoModelForSequenceClassification

    t_load = time.time()
    # the checkpoint's family (BERT, MPNet, ...) with its classification head
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
    H = model.config.hidden_size
    if a.tune == "adapter":
        import adapters
        from adapters import DoubleSeqBnConfig
        if model.config.model_type == "mpnet":
            # adapters 1.3 has no built-in MPNet support: its plugin interface, naming MPNet's
            # modules (the bottleneck adapters go after attention.attn.o and output.dense)
            adapters.init(model, interface=adapters.AdapterModelInterface(
                adapter_methods=["bottleneck"], model_embeddings="embeddings",
                model_layers="encoder.layer", layer_self_attn="attention.attn", layer_cross_attn=None,
                attn_q_proj="q", attn_k_proj="k", attn_v_proj="v", attn_o_proj="o",
                layer_intermediate_proj="intermediate.dense", layer_output_proj="output.dense",
                layer_ln_1="attention.LayerNorm", layer_ln_2="output.LayerNorm"))
        else:
            adapters.init(model)
        model.add_adapter("task", config=DoubleSeqBnConfig(reduction_factor=H / 64, non_linearity="gelu"))
        model.set_active_adapters("task")
    for n, p in model.named_parameters():
        p.requires_grad = a.tune == "full" or ".adapters." in n or "LayerNorm" in n or n.startswith("classifier.")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    t_load = time.time() - t_load
    batches = read_batches(a)
    takes_types = "token_type_ids" in getattr(model, "forward").__code__.co_varnames
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(7)

    def make(lens):
        S = max(lens)
        ids = torch.randint(1000, vocab, (len(lens), S), generator=gen)
        am = torch.zeros(len(lens), S, dtype=torch.long)
        for r, n in enumerate(lens):
            ids[r, 0], ids[r, n - 1] = 101, 102
            ids[r, n:] = 0
            am[r, :n] = 1
        # token types only for the families that read them (MPNet's forward takes none)
        return ids, ({"token_type_ids": torch.zeros_like(ids)} if takes_types else {}), am

    work = []
    if a.mode == "latency":
        rows = [n for lens in batches for n in lens]
        for k in range(a.warmup + a.steps):
            work.append([rows[k % len(rows)]])
    else:
        for k in range(a.warmup + a.steps):
            work.append(batches[k % len(batches)])

    if a.mode == "train":
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for n, p in model.named_parameters() if p.requires_grad and not ("LayerNorm" in n or n.endswith("bias"))]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and ("LayerNorm" in n or n.endswith("bias"))]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=3e-5 if a.tune == "full" else 3e-4, eps=1e-6)
    else:
        model.eval()

    lat, tokens, nrows, t0 = [], 0, 0, None
    for k, lens in enumerate(work):
        if k == a.warmup:
            tokens, nrows, t0 = 0, 0, time.perf_counter()
        ids, tt, am = make(lens)
        ts = time.perf_counter()
        if a.mode == "train":
            y = torch.tensor([r & 1 for r in range(len(lens))])
            out = model(input_ids=ids, attention_mask=am, labels=y, **tt)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=am, **tt).logits.sum().item()
        lat.append(1e3 * (time.perf_counter() - ts))
        tokens += sum(lens)
        nrows += len(lens)
    dt = time.perf_counter() - t0
    timed = sorted(lat[a.warmup:])
    print(json.dumps({
        "stack": "torch", "mode": a.mode, "tune": a.tune, "layers": model.config.num_hidden_layers,
        "hidden": H, "threads": torch.get_num_threads(), "steps": a.steps, "rows": nrows, "tokens": tokens,
        "seconds": round(dt, 4), "tokens_per_s": round(tokens / dt, 2), "rows_per_s": round(nrows / dt, 3),
        "latency_p50_ms": round(timed[(len(timed) - 1) // 2], 3),
        "latency_p99_ms": round(timed[math.ceil(0.99 * len(timed)) - 1], 3),
        "load_s": round(t_load, 3), "trained_params": trained,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "adapters": __import__("adapters").__version__},
    }))


if __name__ == "__main__":
    main()
