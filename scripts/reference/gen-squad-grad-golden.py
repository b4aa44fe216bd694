#!/usr/bin/env python3
"""Writes the span-head gradient golden files of tests/test_train.c from PyTorch autograd on
transformers' BertForQuestionAnswering with the same Houlsby adapters as gen-grad-golden.py
(whose adapters, initial values, trainable sets, batch builder, file writers, AdamW steps and
number format it imports).

Usage: .venv-ref/bin/python scripts/reference/gen-squad-grad-golden.py [MODEL_DIR] [DATA_DIR]
       (defaults: models/all-MiniLM-L6-v2 and ../shared/data beside the repository)

The reference model (dropout off: eval mode):
    transformers BertForQuestionAnswering (eager attention; no pooler), loaded from the
    checkpoint, with the adapters of gen-grad-golden.py; qa_outputs = Linear(H, 2) on every
    token: start_logits = logits[..., 0], end_logits = logits[..., 1].
    loss = (CrossEntropy(start_logits, start) + CrossEntropy(end_logits, end)) / 2, mean over
    the batch, where each row's logits at its PADDED positions are set to -inf first: padding is
    never a candidate position. BertForQuestionAnswering's own loss puts the padded positions'
    (finite) logits into the softmax too, so on padded rows it depends on the padding; the
    `nopad` case has rows of one length and takes BertForQuestionAnswering's own loss
    (model(..., start_positions=, end_positions=).loss), checked here to equal the masked one.
Trainable sets as petl's --tune, with qa_outputs as the head.

Outputs (format of gen-grad-golden.py, plus):
  case NAME TUNE TOP_K ADAPTER_SIZE ACT PLACEMENT 2 span     (the head kind as a 9th field)
  spans s0 e0 s1 e1 ...        start / end position per row, instead of labels / targets
  logits N v...                start, end logit of every real token, rows one after the other
                               (petl's packed layout [tokens, 2])
  tests/golden/grad/span_tiny.golden    tiny-bert/plain: adapter (+ 20 AdamW steps),
                                        adapter_ffn_swish, full, layernorm_nopad, head, top1;
                                        every trained gradient in full
  tests/golden/grad/span_minilm.golden  all-MiniLM-L6-v2 on 4 real SQuAD dev questions as
                                        [CLS] question [SEP] context [SEP] cut to 64 tokens,
                                        --tune adapter size 16: loss, logits, gradient norms and
                                        samples, 10 AdamW steps
"""
import importlib.util
import json
import os

import torch
import torch.nn as nn
from transformers import AutoTokenizer, BertForQuestionAnswering

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_grad_golden",
                                               os.path.join(HERE, "gen-grad-golden.py"))
G = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(G)  # patches BertSelfOutput / BertOutput with the adapter hook

MODEL_DIR, DATA_DIR, OUT = G.MODEL_DIR, G.DATA_DIR, G.OUT  # the same command line
fmt = G.fmt


class QARef(nn.Module):
    def __init__(self, model_dir):
        super().__init__()
        self.qa = BertForQuestionAnswering.from_pretrained(model_dir, dtype=torch.float32,
                                                           attn_implementation="eager")

    def named_parameters(self, *a, **k):  # petl's names: bert.*, qa_outputs.*
        for n, p in self.qa.named_parameters(*a, **k):
            yield n, p

    def forward(self, ids, types, mask, start, end, hf_loss=False):
        out = self.qa(input_ids=ids, token_type_ids=types, attention_mask=mask,
                      start_positions=start if hf_loss else None,
                      end_positions=end if hf_loss else None)
        s, e = out.start_logits, out.end_logits
        pad = mask == 0
        ls = nn.functional.cross_entropy(s.masked_fill(pad, float("-inf")), start)
        le = nn.functional.cross_entropy(e.masked_fill(pad, float("-inf")), end)
        masked = (ls + le) / 2
        if hf_loss:
            assert torch.allclose(out.loss, masked, rtol=1e-6, atol=0), (out.loss, masked)
            return out.loss, s, e
        return masked, s, e


def run_case(f, name, model_dir, ids_list, types_list, spans, tune, top_k=0, m=8, act="gelu",
             placement="both", full_grads=True, steps=0, lr=1e-3, seed=0, hash_init=False,
             hf_loss=False):
    torch.manual_seed(seed)
    model = QARef(model_dir).eval()  # eval: dropout off
    inits, params = G.prepare(model, model.qa.bert, "qa_outputs.", tune, top_k, m, act,
                              placement, hash_init)
    ids, types, mask = G.make_batch(ids_list, types_list)
    if hf_loss:
        assert bool(mask.all()), "the HF-loss case must have no padding"
    start = torch.tensor([s for s, _ in spans], dtype=torch.long)
    end = torch.tensor([e for _, e in spans], dtype=torch.long)
    G.write_inputs(f, f"{name} {tune} {top_k} {m} {act} {placement} 2 span", ids, types,
                   ids_list, "spans " + " ".join(f"{s} {e}" for s, e in spans), model, inits)

    loss, s_log, e_log = model(ids, types, mask, start, end, hf_loss)
    loss.backward()
    f.write(f"loss {fmt(loss.item())}\n")
    packed = []
    for r, row in enumerate(ids_list):
        for p in range(len(row)):
            packed += [s_log[r, p].item(), e_log[r, p].item()]
    f.write(f"logits {len(packed)} " + " ".join(fmt(x) for x in packed) + "\n")
    G.write_grads(f, name, loss, params, full_grads)
    if steps:
        G.write_steps(f, params, steps, lr,
                      lambda: model(ids, types, mask, start, end, hf_loss)[0])
    f.write("end\n")


def tiny():
    with G.tiny_bert("petl-span-grad-") as tmp:
        g = torch.Generator().manual_seed(13)

        def rows(lens):
            ids_list, types_list = [], []
            for n in lens:
                ids_list.append([2] + torch.randint(3, 99, (n - 1,), generator=g).tolist())
                na = max(1, n // 3)
                types_list.append([0] * na + [1] * (n - na))
            return ids_list, types_list

        # padded rows (lengths differ); one answer at [CLS] (a window without the answer)
        ids, types = rows([9, 4, 14, 6])
        spans = [(5, 7), (0, 0), (6, 6), (3, 5)]
        # rows of one length: no padding, so BertForQuestionAnswering's own loss applies
        ids_np, types_np = rows([8, 8, 8])
        spans_np = [(4, 6), (0, 0), (3, 3)]
        with open(f"{OUT}/span_tiny.golden", "w") as f:
            f.write("# generated by scripts/reference/gen-squad-grad-golden.py: "
                    "tiny-bert/plain\n")
            run_case(f, "span_adapter", tmp, ids, types, spans, "adapter", m=8, act="gelu",
                     steps=20, lr=1e-2, seed=21)
            run_case(f, "span_adapter_ffn_swish", tmp, ids, types, spans, "adapter", m=5,
                     act="swish", placement="ffn", seed=22)
            run_case(f, "span_full", tmp, ids, types, spans, "full", seed=23)
            run_case(f, "span_layernorm_nopad", tmp, ids_np, types_np, spans_np, "layernorm",
                     seed=24, hf_loss=True)
            run_case(f, "span_head", tmp, ids, types, spans, "head", seed=25)
            run_case(f, "span_top1", tmp, ids, types, spans, "top", top_k=1, seed=26)


def minilm():
    """4 real dev questions, each as one window of at most 64 tokens holding its answer (the
    first question of the article's second paragraph whose answer fits; the context is cut
    after it; the span is the answer's tokens by their offsets)."""
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    with open(os.path.join(DATA_DIR, "squad/dev-v1.1.json"), encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    ids_list, types_list, spans = [], [], []
    for art in (data[38], data[40], data[44], data[47]):  # held-out articles
        para = art["paragraphs"][1]
        for qa in para["qas"]:
            ans = qa["answers"][0]
            a0, a1 = ans["answer_start"], ans["answer_start"] + len(ans["text"])
            enc = tok(qa["question"], para["context"], truncation="only_second", max_length=64,
                      return_offsets_mapping=True)
            seqids = enc.sequence_ids()
            s = e = None
            for i, (o0, o1) in enumerate(enc["offset_mapping"]):
                if seqids[i] != 1 or o1 <= a0 or o0 >= a1:
                    continue
                s = i if s is None else s
                e = i
            # the whole answer inside the window (its last token before the final [SEP])
            if s is not None and enc["offset_mapping"][e][1] >= a1 and \
                    e < len(enc["input_ids"]) - 1:
                break
        else:
            raise SystemExit(f"no question of {art['title']} fits 64 tokens")
        ids_list.append(enc["input_ids"])
        types_list.append(enc["token_type_ids"])
        spans.append((s, e))
    with open(f"{OUT}/span_minilm.golden", "w") as f:
        f.write("# generated by scripts/reference/gen-squad-grad-golden.py: all-MiniLM-L6-v2, "
                "4 SQuAD dev questions (articles 38, 40, 44, 47)\n")
        run_case(f, "span_minilm_adapter", MODEL_DIR, ids_list, types_list, spans, "adapter",
                 m=16, act="gelu", full_grads=False, steps=10, lr=1e-3, seed=27,
                 hash_init=True)


if __name__ == "__main__":
    G.main((tiny, minilm), ("span_tiny.golden", "span_minilm.golden"))
