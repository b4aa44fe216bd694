#!/usr/bin/env python3
"""A BERT-base-shaped model folder with random weights for bench/train-bench: 12 layers, hidden
768, 12 heads, intermediate 3072, vocabulary 30522 (transformers' BertConfig defaults), weights as
BertModel initialises them (normal(0, 0.02), LayerNorms 1 / 0), seeded. Writes config.json,
model.safetensors and a copy of the default model's vocab.txt (the same uncased 30,522-token
vocabulary) so that both stacks load the same folder.

    .venv-ref/bin/python bench/make-random-model.py OUT_DIR VOCAB_TXT
"""
import shutil
import sys

import torch
from transformers import BertConfig, BertModel

out, vocab = sys.argv[1], sys.argv[2]
torch.manual_seed(1234)
model = BertModel(BertConfig())
model.save_pretrained(out, safe_serialization=True)
shutil.copy(vocab, f"{out}/vocab.txt")
print(f"{out}: {sum(p.numel() for p in model.parameters()):,} parameters")
