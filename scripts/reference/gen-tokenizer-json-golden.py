#!/usr/bin/env python3
"""Writes the golden files of the tokenizer.json path (tests/test_tokenizer_json.c) from the
reference, HuggingFace's `tokenizers` (0.22.2) reading each tokenizer.json itself
(Tokenizer.from_str, no padding, truncation longest_first at max_length N, none when N == 0;
an empty text_b is no pair, as transformers does):

  tests/golden/tokjson/NAME.json             the tokenizer (not for minilm: the test reads the
                                             model folder's real tokenizer.json)
  tests/golden/tokjson/NAME.cases.jsonl      hard cases: the ids, type ids and byte offsets
  tests/golden/tokjson/NAME.glue.tsv         task, row, hash: every dev row of CoLA, SST-2,
                                             MRPC, RTE, STS-B at max_length 128
  tests/golden/tokjson/NAME.codepoints.tsv   first code point, hash: every scalar value in
                                             blocks of 256, as tokenizer_codepoints.tsv

The tokenizers: minilm (all-MiniLM-L6-v2's real file: BertNormalizer, BertPreTokenizer,
WordPiece, TemplateProcessing); wordpiece-cased (trained here on the GLUE train text, cased, no
accent stripping, BertProcessing); mpnet-style (MPNet's layout on an uncased trained
vocabulary: RobertaProcessing <s> A </s></s> B </s>, <mask> with lstrip, special tokens appended
past the vocabulary); added-flags (added tokens with every flag, normalized and not,
a TemplateProcessing with a two-id special token and type ids 0..2); plain (no normalizer, no
post-processor).

Offsets: the reference's are code points of each sequence's own text; petl's are UTF-8 bytes,
so they are converted here. The hash (the C test computes the same): 64-bit FNV-1a over the
ids, then the type ids, then the offsets (begin, end per token), each a little-endian int32.

Run with the reference venv: .venv-ref/bin/python scripts/reference/gen-tokenizer-json-golden.py
[--model DIR] [--data DIR] [--out DIR]
"""
import argparse
import importlib.util
import json
import os
import random
import struct
import sys

from tokenizers import AddedToken, Tokenizer, processors
from tokenizers.implementations import BertWordPieceTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "gen_tokenizer_golden", os.path.join(HERE, "gen-tokenizer-golden.py"))
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def fnv1a(values):
    h = 0xCBF29CE484222325
    for v in values:
        for b in struct.pack("<i", v):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def byte_offsets(text):
    """cum[i]: the UTF-8 byte offset of code point i of text."""
    cum = [0]
    for ch in text:
        cum.append(cum[-1] + len(ch.encode("utf-8")))
    return cum


def encode(tok, a, b, max_len):
    """ids, type ids, byte offsets; None when the reference refuses the input."""
    try:
        if max_len > 0:
            tok.enable_truncation(max_length=max_len)
        else:
            tok.no_truncation()
        e = tok.encode(a, b) if b else tok.encode(a)
    except Exception:  # noqa: BLE001 (the reference's refusal: the case is left out)
        return None
    cums = [byte_offsets(a), byte_offsets(b or "")]
    offs = []
    for (s, t), seq in zip(e.offsets, e.sequence_ids):
        if seq is None:
            offs.append([0, 0] if (s, t) == (0, 0) else [s, t])
        else:
            offs.append([cums[seq][s], cums[seq][t]])
    return e.ids, e.type_ids, offs


def glue_texts(data_dir, split):
    for task, (header, ca, cb) in base.GLUE.items():
        rows = base.read_tsv(os.path.join(data_dir, "glue", task, split + ".tsv"))
        if header:
            rows = rows[1:]
        for i, r in enumerate(rows):
            yield task, i, r[ca], (r[cb] if cb is not None else None)


def train_wordpiece(data_dir, lowercase, vocab_size):
    tok = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True,
                                 strip_accents=None, lowercase=lowercase)
    texts = []
    for _, _, a, b in glue_texts(data_dir, "train"):
        texts.append(a)
        if b:
            texts.append(b)
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok


def make_tokenizers(model_dir, data_dir):
    toks = {}
    toks["minilm"] = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    toks["wordpiece-cased"] = Tokenizer.from_str(
        train_wordpiece(data_dir, False, 5000)._tokenizer.to_str())
    uncased = train_wordpiece(data_dir, True, 4000)
    # MPNet's layout (all-mpnet-base-v2, transformers' MPNetTokenizerFast): the BERT pipeline
    # with <s> </s> <pad> <mask> added past the vocabulary, <mask> taking the space before it
    mp = Tokenizer.from_str(uncased._tokenizer.to_str())
    mp.add_special_tokens([AddedToken("<s>", normalized=False, special=True),
                           AddedToken("</s>", normalized=False, special=True),
                           AddedToken("<pad>", normalized=False, special=True),
                           AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    mp.post_processor = processors.RobertaProcessing(
        sep=("</s>", mp.token_to_id("</s>")), cls=("<s>", mp.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=True)
    toks["mpnet-style"] = mp
    t = Tokenizer.from_str(uncased._tokenizer.to_str())
    t.add_tokens([
        AddedToken("hello world", single_word=True),
        AddedToken("<ent>", lstrip=True, rstrip=True, normalized=False),
        AddedToken("Ünïcode", normalized=True),
        AddedToken("new", single_word=True, normalized=False),
        AddedToken("[Tag]", normalized=False, rstrip=True),
        AddedToken("中文", normalized=True),
        AddedToken("##ing", normalized=False),
        AddedToken("xyzzy", normalized=True, lstrip=True),
        AddedToken("the", normalized=True, single_word=True),
    ])
    t.add_special_tokens([AddedToken("<sys>", lstrip=True)])
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A:0 [SEP]:2",
        pair="[CLS]:1 [PAIR] $A:0 [SEP] $B:2 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep),
                        {"id": "[PAIR]", "ids": [sep, cls], "tokens": ["[SEP]", "[CLS]"]}])
    toks["added-flags"] = t
    p = Tokenizer.from_str(uncased._tokenizer.to_str())
    p.normalizer = None
    p.post_processor = None
    toks["plain"] = p
    for t in toks.values():
        t.no_padding()
    return toks


def extra_cases():
    """Cases aimed at added tokens and templates (every tokenizer runs them)."""
    c = []
    add = lambda a, b=None, m=128: c.append((a, b, m))
    for t in ["<mask>", " <mask> ", "a <mask>b", "a<mask> b", "<mask><mask>", "  <mask>",
              "<s>x</s>", "</s></s>", "<pad> <unk>", "<s ><mask >", "x <mask>\u3000y",
              "hello world", "hello worlds", "hello world!", "ahello world", "Hello World",
              "hello  world", "<ent>", " <ent> x", "x<ent>y", "x  <ent>  y", "\u3000<ent>\u3000",
              "Ünïcode", "ünïcode", "UNÏCODE x", "unicode", "new", "renew", "new!", "news new",
              "[Tag]", "[Tag]   x", "[tag]", "a[Tag]b", "中文", "中文字", "x中文y", "##ing",
              "going", "go##ing", "xyzzy", "  xyzzy", "a xyzzy", "XYZZY", "the", "then the",
              "the,the", "athe the", "<sys>", " <sys>", "a <sys> b", "<sys><sys>",
              "[CLS] [SEP] [MASK]", "a[SEP]b", " [UNK] "]:
        add(t)
        add("pair " + t, t + " pair", 0)
    rng = random.Random(99)
    pieces = ["<mask>", "<s>", "</s>", " ", "  ", "a", "hello", " world", "<ent>", "new",
              "[Tag]", "Ünïcode", "中文", "##ing", "xyzzy", "the", "<sys>", "é", "\u3000", ","]
    for _ in range(100):
        a = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        add(a, b if rng.random() < 0.5 else None, rng.choice([0, 3, 4, 5, 6, 7, 9, 12, 128]))
    return c


def gen_cases(tok, out):
    rng = random.Random(1234)
    cases = base.hard_cases() + base.programmatic_cases(rng) + extra_cases()
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for a, b, m in cases:
            r = encode(tok, a, b, m)
            if r is None:
                continue
            d = {"text_a": a}
            if b is not None:
                d["text_b"] = b
            d["max_len"] = m
            d["input_ids"], d["token_type_ids"], d["offsets"] = r
            f.write(json.dumps(d, ensure_ascii=True, separators=(",", ":")) + "\n")
            n += 1
    return n


def gen_glue(tok, data_dir, out):
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for task, i, a, b in glue_texts(data_dir, "dev"):
            ids, types, offs = encode(tok, a, b, 128)
            flat = [v for o in offs for v in o]
            f.write("%s\t%d\t%s\n" % (task, i, fnv1a(ids + types + flat)))
            n += 1
    return n


def gen_codepoints(tok, out):
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for lo in range(0, 0x110000, 256):
            if 0xD800 <= lo <= 0xDFFF:
                continue
            ids, types, offs = encode(tok, base.codepoint_block_text(lo, lo + 256), None, 0)
            flat = [v for o in offs for v in o]
            f.write("%X\t%s\n" % (lo, fnv1a(ids + types + flat)))
            n += 1
    return n


def main():
    root = os.path.dirname(os.path.dirname(HERE))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden", "tokjson"))
    ap.add_argument("--only", help="one tokenizer name")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, tok in make_tokenizers(args.model, args.data).items():
        if args.only and name != args.only:
            continue
        if name != "minilm":
            with open(os.path.join(args.out, name + ".json"), "w", encoding="utf-8") as f:
                f.write(tok.to_str())
        n = gen_cases(tok, os.path.join(args.out, name + ".cases.jsonl"))
        g = gen_glue(tok, args.data, os.path.join(args.out, name + ".glue.tsv"))
        p = gen_codepoints(tok, os.path.join(args.out, name + ".codepoints.tsv"))
        print("%s: %d cases, %d GLUE dev rows, %d code point blocks" % (name, n, g, p))


if __name__ == "__main__":
    sys.exit(main())
