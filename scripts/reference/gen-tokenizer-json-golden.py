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
post-processor); byte-level BPE trained here in RoBERTa's layout (roberta-style: no prefix space,
RobertaProcessing, <mask> normalized with lstrip) and GPT-2's (gpt2-style: prefix space,
ByteLevel post-processor trimming offsets); char-bpe (end-of-word suffix, unk fused, few
characters known); bpe-prefix (continuing-subword prefix ##); bpe-bytefallback (<0xXX> tokens
for unknown characters, two of them missing so that unk shows too); unigram-metaspace (Unigram
after Metaspace, XLM-R's RobertaProcessing); unigram-bytefallback (lowercased, WhitespaceSplit
then Metaspace with prepend_scheme "first", byte fallback, a TemplateProcessing);
whitespace-wordpiece (WordPiece after the Whitespace pre-tokenizer); norm-sequence (NFD,
Lowercase, StripAccents, Strip before WordPiece); norm-prepend (Strip, Prepend before Unigram);
norm-nfkd (NFKD, Lowercase); norm-replace (Replace and Prepend before Unigram); bert-marks,
nfd-marks (character BPE after BertNormalizer / NFD + Lowercase, with 800 extra strings of
combining marks that NFD reorders); punct-next, punct-previous, punct-contiguous (Punctuation with each
split behaviour and Digits, in pre-tokenizer Sequences, before WordPiece); norm-replace-regex
(Replace with Regex patterns: runs of spaces, a class, an alternation with (?i), an empty
lookahead match, ^ and $ line anchors, before WordPiece); split-gpt4 (the GPT-4 / Llama-3
Split, Isolated, before ByteLevel without its regex, byte-level BPE trained here);
split-sequence (Splits with String and Regex patterns, Removed, Contiguous, MergedWithNext,
MergedWithPrevious inverted, Isolated on empty matches, before WordPiece); split-alone (one
inverted Removed Split as the whole pre-tokenizer). These four also run regex_cases().

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

from tokenizers import (AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers,
                        processors, trainers)
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

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
    texts = glue_train_texts(data_dir)
    # byte-level BPE: RoBERTa's layout (no prefix space, RobertaProcessing) and GPT-2's
    bl = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bl.train_from_iterator(texts, vocab_size=5000, min_frequency=2,
                           special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    rob = Tokenizer.from_str(bl._tokenizer.to_str())
    rob.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=True, special=True)])
    rob.post_processor = processors.RobertaProcessing(
        sep=("</s>", rob.token_to_id("</s>")), cls=("<s>", rob.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    toks["roberta-style"] = rob
    gpt = Tokenizer.from_str(bl._tokenizer.to_str())
    gpt.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=True)
    gpt.post_processor = processors.ByteLevel(trim_offsets=True, add_prefix_space=True)
    toks["gpt2-style"] = gpt
    # character BPE with an end-of-word suffix and a fused unk (few characters known)
    cb = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>", fuse_unk=True))
    cb.normalizer = normalizers.BertNormalizer(lowercase=False)
    cb.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cb.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=3000, min_frequency=2, limit_alphabet=60, end_of_word_suffix="</w>",
        special_tokens=["<unk>", "<cls>", "<sep>"]))
    cb.post_processor = processors.BertProcessing(
        sep=("<sep>", cb.token_to_id("<sep>")), cls=("<cls>", cb.token_to_id("<cls>")))
    toks["char-bpe"] = cb
    # BPE with the WordPiece-style prefix
    pb = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    pb.normalizer = normalizers.BertNormalizer(lowercase=True)
    pb.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    pb.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=3000, min_frequency=2, continuing_subword_prefix="##",
        special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    pb.post_processor = processors.BertProcessing(
        sep=("[SEP]", pb.token_to_id("[SEP]")), cls=("[CLS]", pb.token_to_id("[CLS]")))
    toks["bpe-prefix"] = pb
    # byte fallback: unknown characters as <0xXX> tokens, unk only where those are missing
    bf = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bytes_tokens = ["<0x%02X>" % b for b in range(256) if b not in (0xC3, 0xE4)]
    bf.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, limit_alphabet=50,
        special_tokens=["<unk>"] + bytes_tokens))
    toks["bpe-bytefallback"] = bf
    # Unigram (SentencePiece's model): Metaspace alone, RobertaProcessing as XLM-R
    ug = Tokenizer(models.Unigram())
    ug.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    ug.train_from_iterator(texts, trainers.UnigramTrainer(
        vocab_size=3000, unk_token="<unk>", special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    ug.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    ug.post_processor = processors.RobertaProcessing(
        sep=("</s>", ug.token_to_id("</s>")), cls=("<s>", ug.token_to_id("<s>")))
    toks["unigram-metaspace"] = ug
    # Unigram with byte fallback after WhitespaceSplit + Metaspace (prepend "first"), lowercased
    ub = Tokenizer(models.Unigram())
    ub.normalizer = normalizers.BertNormalizer(lowercase=True)
    ub.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")])
    ub.train_from_iterator(texts, trainers.UnigramTrainer(
        vocab_size=2000, unk_token="<unk>",
        special_tokens=["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)
                                                   if b not in (0xE4, 0xF0)]))
    d = json.loads(ub.to_str())
    d["model"]["byte_fallback"] = True
    ub = Tokenizer.from_str(json.dumps(d))
    ub.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", ub.token_to_id("<s>")), ("</s>", ub.token_to_id("</s>"))])
    toks["unigram-bytefallback"] = ub
    # WordPiece after the Whitespace pre-tokenizer (\w+|[^\w\s]+)
    d = json.loads(uncased._tokenizer.to_str())
    d["pre_tokenizer"] = {"type": "Whitespace"}
    toks["whitespace-wordpiece"] = Tokenizer.from_str(json.dumps(d))
    # normalizer Sequences: NFD + Lowercase + StripAccents + Strip before WordPiece (Whitespace
    # split); Strip(left) + Prepend("\u2581") before Unigram with Metaspace(never)
    d = json.loads(uncased._tokenizer.to_str())
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"},
        {"type": "Strip", "strip_left": True, "strip_right": True}]}
    d["pre_tokenizer"] = {"type": "Whitespace"}
    toks["norm-sequence"] = Tokenizer.from_str(json.dumps(d))
    d = json.loads(ug.to_str())
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Strip", "strip_left": True, "strip_right": False},
        {"type": "Prepend", "prepend": "\u2581"}]}
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "never", "split": True}
    toks["norm-prepend"] = Tokenizer.from_str(json.dumps(d))
    # NFKD (compatibility decompositions: ligatures, full width, circled letters) + Lowercase
    d = json.loads(uncased._tokenizer.to_str())
    d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Lowercase"}]}
    toks["norm-nfkd"] = Tokenizer.from_str(json.dumps(d))
    # Replace (String patterns, one and several characters) + Prepend before Unigram, as
    # Llama-style files do
    d = json.loads(ug.to_str())
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        {"type": "Replace", "pattern": {"String": "th"}, "content": "TH!"},
        {"type": "Replace", "pattern": {"String": "\u2581\u2581"}, "content": ""},
        {"type": "Prepend", "prepend": "\u2581"}]}
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "never", "split": True}
    toks["norm-replace"] = Tokenizer.from_str(json.dumps(d))
    # Runs of combining marks that NFD reorders (dropped and kept ones, after precomposed
    # letters): character-level BPE after BertNormalizer, after NFD + Lowercase, and after NFC
    # and NFKC (which compose what they can again: blocked and unblocked marks, Hangul jamo)
    for name, nz in [("bert-marks", normalizers.BertNormalizer(lowercase=True)),
                     ("nfd-marks", normalizers.Sequence([normalizers.NFD(),
                                                         normalizers.Lowercase()])),
                     ("nfc-marks", normalizers.NFC()),
                     ("nfkc-marks", normalizers.Sequence([normalizers.NFKC(),
                                                          normalizers.Lowercase()]))]:
        chars = sorted(set(c for t in mark_soups() for c in nz.normalize_str(t)))
        vocab = {"[UNK]": 0}
        for c in chars:
            vocab.setdefault(c, len(vocab))
        m = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
        m.normalizer = nz
        toks[name] = m
    # Punctuation and Digits, with every split behaviour, in pre-tokenizer Sequences
    for name, seq in [
            ("punct-next", [{"type": "WhitespaceSplit"},
                            {"type": "Punctuation", "behavior": "MergedWithNext"},
                            {"type": "Digits", "individual_digits": True}]),
            ("punct-previous", [{"type": "Punctuation", "behavior": "MergedWithPrevious"},
                                {"type": "Digits", "individual_digits": False},
                                {"type": "WhitespaceSplit"}]),
            ("punct-contiguous", [{"type": "Punctuation", "behavior": "Contiguous"},
                                  {"type": "WhitespaceSplit"},
                                  {"type": "Punctuation", "behavior": "Removed"}])]:
        d = json.loads(uncased._tokenizer.to_str())
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": seq}
        toks[name] = Tokenizer.from_str(json.dumps(d))
    # Replace with Regex patterns (XLM-R's " {2,}"; a class; an alternation with (?i); an empty
    # match between lookarounds; ^ and $ anchors, at every line) before WordPiece. "^" comes
    # last: the reference panics in a later Lowercase when a text starts with inserted content
    # (an empty match at 0 gives it the span (0, 0), which transform_range then misreads)
    d = json.loads(uncased._tokenizer.to_str())
    rx = lambda p, c: {"type": "Replace", "pattern": {"Regex": p}, "content": c}
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        rx(" {2,}", " "), rx("[\u2018\u2019`\u00b4]", "'"),
        rx("colou?r|Mrs?\\.|(?i:'re|'ll)|\\d{4,}", "\u03a3x"),
        rx("(?<=\\p{Ll})(?=\\p{Lu})", "_"), rx("\\s+$", ""), {"type": "Lowercase"},
        rx("^", ">")]}
    toks["norm-replace-regex"] = Tokenizer.from_str(json.dumps(d))
    # the GPT-4 split (Llama-3's, tiktoken's cl100k) before ByteLevel without its own regex
    gpt4 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    sg = Tokenizer(models.BPE())
    sg.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(gpt4), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    sg.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>"]))
    sg.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", sg.token_to_id("<|begin_of_text|>"))])
    toks["split-gpt4"] = sg
    # Splits in a Sequence and alone, before a cased WordPiece
    sp = lambda p, b, inv, kind="Regex": {"type": "Split", "pattern": {kind: p}, "behavior": b,
                                          "invert": inv}
    cased = json.loads(toks["wordpiece-cased"].to_str())
    d = json.loads(json.dumps(cased))
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        sp(" ", "Removed", False, "String"), sp("\\p{P}", "Contiguous", False),
        sp("\\d", "MergedWithNext", False), sp("'", "MergedWithPrevious", True, "String"),
        sp("(?=\\p{Lu})", "Isolated", False)]}
    toks["split-sequence"] = Tokenizer.from_str(json.dumps(d))
    d = json.loads(json.dumps(cased))
    d["pre_tokenizer"] = sp("[\\p{L}\\p{M}]+|\\p{N}+", "Removed", True)
    toks["split-alone"] = Tokenizer.from_str(json.dumps(d))
    # SentencePiece's Unigram with its precompiled charsmap (nmt_nfkc), trained here with the
    # sentencepiece library and converted by transformers' XLMRobertaConverter, as XLM-R's
    # tokenizer.json is: Precompiled, Strip (right) before Metaspace, <s> A </s></s> B </s>.
    # xlmr-style is the converter's file as it is; unigram-precompiled leaves out its last
    # normalizer, Replace(Regex " {2,}", "\u2581").
    xlmr = spm_xlmr(data_dir).to_str()
    toks["xlmr-style"] = Tokenizer.from_str(xlmr)
    d = json.loads(xlmr)
    d["normalizer"]["normalizers"] = [n for n in d["normalizer"]["normalizers"]
                                      if n["type"] != "Replace"]
    toks["unigram-precompiled"] = Tokenizer.from_str(json.dumps(d))
    for t in toks.values():
        t.no_padding()
    return toks


def spm_xlmr(data_dir):
    """A Unigram SentencePiece model (3,000 pieces, nmt_nfkc rules) trained on GLUE train text,
    converted to a tokenizers Tokenizer the way transformers converts XLM-R's."""
    import tempfile
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer
    from transformers.convert_slow_tokenizer import convert_slow_tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "train.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(glue_train_texts(data_dir)[:30000]))
        spm.SentencePieceTrainer.train(
            input=os.path.join(tmp, "train.txt"), model_prefix=os.path.join(tmp, "m"),
            vocab_size=3000, model_type="unigram", normalization_rule_name="nmt_nfkc",
            character_coverage=1.0, num_threads=1, minloglevel=2)
        return convert_slow_tokenizer(XLMRobertaTokenizer(vocab_file=os.path.join(tmp, "m.model")))


def regex_cases():
    """Cases aimed at the Replace and Split patterns (the regex tokenizers run them too)."""
    c = []
    for t in ["'\u017f 'S 'T 'RE 'Ll \ufb06 \ufb05 \u212a k 's't're", "CamelCaseWord HTTPServer aB",
              "  double  spaces   here  ", "line1\nline2\r\n\n  line3 \n", "\n", " ", "x\n",
              "it\u2019s \u2018quoted\u2019 `tick\u00b4", "colour color Mr. Mrs. Mrs colouur",
              "123456789 12 1234 \u0661\u0662\u0663\u0664 \u00b2\u00b3 \u2160",
              "a--b---c ... !?!", "x\u2028y\u0085z\u00a0w\u180ev", "\u0130stanbul \u01c5 \u00df \u1e9e",
              "don't won't 'quoted' '' '", "a\tb\t\tc\x0bd\x0ce", "caf\u00e9 cafe\u0301 \u4e2d\u6587"]:
        c.append((t, None, 0))
        c.append((t, t[::-1], 0))
    return c


def glue_train_texts(data_dir):
    texts = []
    for _, _, a, b in glue_texts(data_dir, "train"):
        texts.append(a)
        if b:
            texts.append(b)
    return texts


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
              "[CLS] [SEP] [MASK]", "a[SEP]b", " [UNK] ",
              # the GPT-2 split: contractions, runs of spaces, digits, symbols, line breaks
              "I'm you're he's we've they'll I'd can't", "'S 'RE 'll'", "a  b   c    d",
              "trailing   ", "   leading", "x\n\ny\r\n z", "tab\t\tx", "12345 3.14 1,000",
              "x\u00a0y\u2003z\u3000w", "a\u180eb", "émoji 😀😀 ok", "mix中文abc123!?",
              "<0x41> <unk> </w>", "ǅungla", "\u0301x", "$$$ %%% ^^^"]:
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


def mark_soups():
    """Strings of letters, precomposed letters and combining marks of many classes (some that
    BertNormalizer drops, some it keeps), controls and CJK: NFD's reordering and its spans."""
    rng = random.Random(11)
    pool = ["e", "\u00e9", "\u0316", "\u0301", "\U0001D165", "\U0001D16D", "\u1e0d", "a",
            "\u0f71", "\u0f72", "\u0f73", "\u093c", "\u0e38", "\u0e48", "\u05b0", "\u05c1",
            "\u1dfa", "\u0898", "\x01", "\u4e2d", " ", "\u0130", "\u00c5", "\u0345", "\u1f86",
            "\ufb01", "\u3099", "\u309a", "\u304b", "\u0300\u0315", "\u035c", "\u0362"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 10))) for _ in range(800)]


def gen_cases(tok, out, marks=False, regex=False):
    rng = random.Random(1234)
    cases = base.hard_cases() + base.programmatic_cases(rng) + extra_cases()
    if marks:
        cases += [(t, None, 0) for t in mark_soups()]
    if regex:
        cases += regex_cases()
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
    ap.add_argument("--only", help="tokenizer names, comma-separated")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, tok in make_tokenizers(args.model, args.data).items():
        if args.only and name not in args.only.split(","):
            continue
        if name != "minilm":
            with open(os.path.join(args.out, name + ".json"), "w", encoding="utf-8") as f:
                f.write(tok.to_str())
        n = gen_cases(tok, os.path.join(args.out, name + ".cases.jsonl"),
                      name.endswith("-marks") or name in ("unigram-precompiled", "xlmr-style"),
                      name.startswith("split-") or name == "norm-replace-regex")
        g = gen_glue(tok, args.data, os.path.join(args.out, name + ".glue.tsv"))
        p = gen_codepoints(tok, os.path.join(args.out, name + ".codepoints.tsv"))
        print("%s: %d cases, %d GLUE dev rows, %d code point blocks" % (name, n, g, p))


if __name__ == "__main__":
    sys.exit(main())
