#!/usr/bin/env python3
"""Writes the tokenizer golden files from the reference, HuggingFace's BertTokenizerFast
(AutoTokenizer.from_pretrained(model_dir), tokenizers 0.22.2), called as
tok(text_a, text_b, truncation=True, max_length=N) (no truncation when N == 0):

  tests/golden/tokenizer_glue.tsv        task, split, row, hash: every sentence (pair) of the
                                         train and dev files of CoLA, SST-2, MRPC, RTE, STS-B
                                         at max_length 128
  tests/golden/tokenizer_codepoints.tsv  first code point, hash: every Unicode scalar value, in
                                         blocks of 256, in the contexts "<c> x<c>y " (no
                                         truncation), so that a divergence in dropping,
                                         splitting or mapping any character shows up
  tests/golden/tokenizer_cases.jsonl     hard cases with the full expected ids and type ids

The hash (the C test computes the same): 64-bit FNV-1a over the input ids, then the token
type ids, each as a little-endian int32; 16 lower-case hex digits.

Run with the reference venv: .venv-ref/bin/python scripts/reference/gen-tokenizer-golden.py
[--model DIR] [--data DIR] [--out DIR]
"""
import argparse
import json
import os
import random
import struct
import sys
import unicodedata

from transformers import AutoTokenizer

# task -> (has header, column of text a, column of text b or None); see
# ../shared/docs/reference-notes.md
GLUE = {
    "CoLA": (False, 3, None),
    "SST-2": (True, 0, None),
    "MRPC": (True, 3, 4),
    "RTE": (True, 1, 2),
    "STS-B": (True, 7, 8),
}


def fnv1a(ids, types):
    h = 0xCBF29CE484222325
    for v in list(ids) + list(types):
        for b in struct.pack("<i", v):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def encode(tok, a, b, max_len):
    # return_token_type_ids: tokenizers whose model takes none (MPNet, RoBERTa) still have the
    # post-processor's type ids (all 0 for RobertaProcessing), which petl reports too
    if max_len > 0:
        e = tok(a, b, truncation=True, max_length=max_len, return_token_type_ids=True)
    else:
        e = tok(a, b, return_token_type_ids=True)
    return e["input_ids"], e["token_type_ids"]


def read_tsv(path):
    """Rows of a GLUE file: no quote processing, UTF-8 BOM stripped, split on \\n only."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.split("\t") for line in lines]


def gen_glue(tok, data_dir, out):
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for task, (header, ca, cb) in GLUE.items():
            for split in ("train", "dev"):
                rows = read_tsv(os.path.join(data_dir, "glue", task, split + ".tsv"))
                if header:
                    rows = rows[1:]
                for i, r in enumerate(rows):
                    ids, types = encode(tok, r[ca], r[cb] if cb is not None else None, 128)
                    f.write("%s\t%s\t%d\t%s\n" % (task, split, i, fnv1a(ids, types)))
                    n += 1
    return n


def scalars():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def codepoint_block_text(lo, hi):
    """The text of the block [lo, hi): the C test builds the same string."""
    return "".join("%s x%sy " % (chr(c), chr(c))
                   for c in range(lo, hi) if not 0xD800 <= c <= 0xDFFF)


def gen_codepoints(tok, out):
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for lo in range(0, 0x110000, 256):
            if 0xD800 <= lo <= 0xDFFF:
                continue
            ids, types = encode(tok, codepoint_block_text(lo, lo + 256), None, 0)
            f.write("%X\t%s\n" % (lo, fnv1a(ids, types)))
            n += 1
    return n


def words(n, base="w"):
    """n single-token words: a b c ... (each one token in the uncased vocab)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join(letters[i % 26] for i in range(n))


def hard_cases():
    c = []  # (text_a, text_b or None, max_len)
    add = lambda a, b=None, m=128: c.append((a, b, m))
    # --- plain, empty, whitespace
    for t in ["", " ", "   ", "\t\n\r", "\u00a0", "\u3000", "\u2000\u2001\u2002\u2003\u200a",
              "\u1680x\u1680", "a\u0085b", "a\u2028b\u2029c", "a\u202fb\u205fc",
              "Hello, world!", "hello world", "HELLO WORLD", "The quick brown fox.",
              "don't can't won't", "U.S.A. e.g. i.e.", "3.14159 1,000,000 -42 +7 1e10",
              "http://example.com/path?q=1&r=2#frag", "user@example.com", "C++ C# F# .NET",
              "$100 + 5% <= 3 > 2 ^ ` | ~ = @ #", "!!!???...,,,;;;:::", "--- ___ *** /// \\\\\\",
              "(a) [b] {c} <d>", "\"quoted\" 'single'", "a\tb\nc\rd", "a\x0bb\x0cc"]:
        add(t)
    # --- accents, combining marks, Mn vs Mc
    for t in ["café", "cafe\u0301", "naïve résumé", "Ångström", "Å", "\u212b", "ﬁ ﬂ ﬃ",
              "ß STRASSE straße", "Œuvre æsir", "ñ Ñ n\u0303", "Crème Brûlée", "über Ünïcödé",
              "e\u0301\u0302\u0303", "a\u0316\u0301", "a\u0301\u0316", "\u0301abc", "x\u0345y",
              "ka\u093c", "क़ि", "\u0915\u094d\u0937", "a\u0903b", "\u0d3e", "\u1d165\u1d16d",
              "a\U0001D165\U0001D16Db", "a\U0001D16D\U0001D165b", "o\u0328\u0301", "Ǘ ǘ",
              "Ｑ\u0301", "a\u302e\u302fb", "\u0e01\u0e34\u0e48", "ế ệ ễ", "Ḍ̇", "ḍ̇"]:
        add(t)
    # --- Greek sigma, Turkish İ, other casing
    for t in ["ΣΊΣΥΦΟΣ", "ὈΔΥΣΣΕΎΣ", "σς Σ", "İstanbul", "İ", "i̇", "ISTANBUL ıi", "ǅ ǈ ǋ",
              "ẞ", "ΐ ΰ", "Ω Ω K Å", "ﬅ", "ŉ", "ǰ", "Ⅻ ⅻ", "Ⓐ ⓐ", "𐐀𐐨", "ᏸ Ᏸ"]:
        add(t)
    # --- CJK, kana, Hangul, scripts
    for t in ["中文字符", "我爱北京天安门", "日本語のテキスト", "ひらがな カタカナ", "한국어 텍스트",
              "漢字kanji漢字", "㐀㐁 𠀀𠀁 𪜀 𫝀 𫠠 𬺰 豈 丽", "\U0002CEB0\U0002EBF0\U00030000",
              "\u3007\u3005\u303b", "\u2e80\u2f00\u31c0", "العربية نص", "עברית טקסט",
              "हिन्दी पाठ", "ภาษาไทย", "ελληνικά", "русский текст", "ქართული", "Հայերեն",
              "ትግርኛ", "ᠮᠣᠩᠭᠣᠯ", "ꯃꯤꯇꯩ", "𐌰𐌱𐌲", "𓀀𓀁", "\U00013430\U00013439"]:
        add(t)
    # --- emoji, symbols, full width, ligatures
    for t in ["😀 😃 😄", "👍🏽", "👨‍👩‍👧", "🇫🇷🇩🇪", "❤️", "♥ ★ ☆ ✓ ✗", "→ ← ↑ ↓ ⇒",
              "∑ ∫ √ ∞ ≠ ≤ ≥", "° ± × ÷ µ", "€ £ ¥ ¢ ₹ ₿", "© ® ™ ℠", "¼ ½ ¾ ² ³",
              "ＡＢＣ　ｄｅｆ！？", "１２３", "（括号）", "「引用」『二重』", "、。・",
              "ﬀ ﬁ ﬂ ﬃ ﬄ ﬆ", "Ⅳ Ⅸ", "ℌ ℑ ℜ", "𝐀𝐁𝐂 𝒶𝒷", "⁰¹²", "…", "‘’“”", "«»‹›", "¡¿", "§¶†‡",
              "\u2e43\u2e4f\u2e52", "\u061d\u0a76\u0c77", "\u166d", "a\U000111c9b", "a\u1734b",
              "\u1c89\ua7cb\ua7dc", "\U00010d50\U00016ea0", "a\U00011938b",
              "a\U00011935\U00011930b"]:
        add(t)
    # --- control, format, zero-width, unassigned, private use, noncharacters
    for t in ["a\x00b", "a\x01b\x1fc\x7fd", "a\x80b\x9fc", "a\u00adb", "zero\u200bwidth",
              "a\u200cb\u200dc", "a\u200eb\u200fc", "a\u2060b", "\ufeffbom", "a\ufffdb",
              "a\ufffcb", "a\ufffeb\uffffc", "a\ue000b", "\U000f0000\U00100000", "a\U0010fffdb",
              "a\u0378b", "a\U000e0001b", "a\U000e0020\U000e007fb", "a\u0890b\u08e2c",
              "a\u0600b", "a\u061cb", "a\U000110cdb", "a\u180eb", "\u0378\u0379",
              "\U0001fffe\U0001ffff", "a\U00030000b", "a\U000e01efb", "a\u2066b\u2069",
              "a\U0001bca0b", "a\u0ecez", "x\u0ece"]:
        add(t)
    # --- literal special tokens
    for t in ["[SEP]", "[CLS]", "[PAD]", "[UNK]", "[MASK]", "[CLS]x", "a[MASK]b", "[sep]",
              "[SEP ]", "[[SEP]]", "[SEP][SEP]", "hello [MASK] world", "x[UNK]y[PAD]z",
              "[CLS] [SEP] [PAD]", "[MASK", "MASK]", "[ MASK ]", "Ｓ[SEP]", "é[SEP]é",
              "[SEP]\u0301", "a\u0301[SEP]\u0301b", "中[MASK]文", "[SEP" + "a" * 120]:
        add(t)
    # --- long words: the 100-character limit is counted on the normalized word
    for n in (99, 100, 101, 150, 500):
        add("a" * n)
        add("x " + "ab" * (n // 2) + " y")
    add("é" * 100)
    add("é" * 101)
    add("e\u0301" * 100)
    add("a" * 99 + "\u00ad" + "a")
    add("a" * 100 + "\u00ad")
    add("a" * 100 + "!" + "b" * 100)
    add("a" * 50 + "中" + "b" * 60)
    add("𝐀" * 101)
    add("supercalifragilisticexpialidocious " * 3)
    add("antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis")
    add("unaffable unbelievable tokenization tokenizers")
    # --- pairs and truncation
    for na, nb in [(5, 5), (10, 10), (1, 20), (20, 1), (3, 4), (4, 3), (0, 10), (10, 0),
                   (0, 0), (7, 2), (2, 7), (60, 60), (100, 10), (10, 100), (126, 1)]:
        for m in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 128):
            add(words(na), words(nb), m)
    for n in (0, 1, 2, 3, 10, 200):
        for m in (1, 2, 3, 4, 5, 128, 0):
            add(words(n), None, m)
            add(words(n), words(n), m)
    add("a" * 200, "b", 5)
    add("hello, world!", "how are you?", 0)
    add("", "", 128)
    add("", None, 128)
    add("short", "a much longer second sentence with many many tokens in it", 10)
    add("a much longer first sentence with many many tokens in it", "short", 10)
    add("[SEP] a [SEP]", "[CLS] b", 6)
    add("日本語の文章です", "中文句子", 7)
    add("café résumé naïve", "Ångström über", 8)
    return c


def sample_codepoints(rng):
    """A few code points of every general category, from every plane that has some."""
    by_cat = {}
    for cp in scalars():
        by_cat.setdefault((unicodedata.category(chr(cp)), cp >> 16), []).append(cp)
    out = []
    for key in sorted(by_cat):
        cps = by_cat[key]
        out += sorted(set([cps[0], cps[-1]] + rng.sample(cps, min(3, len(cps)))))
    return out


def programmatic_cases(rng):
    c = []
    for cp in sample_codepoints(rng):
        ch = chr(cp)
        c.append(("%s x%sy X%s" % (ch, ch, ch), None, 128))
    # ASCII, one character at a time, alone and inside a word
    for cp in range(0x80):
        c.append(("a%cb %c" % (cp, cp), None, 0))
    # random mixtures of interesting pieces
    pieces = ["a", "B", "é", "e\u0301", "中", " ", "\u00a0", ",", "!", "[SEP]", "[MASK]",
              "\u200b", "\x00", "İ", "Σ", "ß", "😀", "ﬁ", "１", "\u0301", "x\u0345", "$", "~",
              "\t", "\u3000", "un", "##", "want", "ed", "runn", "ing", "[", "]"]
    for _ in range(150):
        a = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        b = None
        if rng.random() < 0.5:
            b = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        c.append((a, b, rng.choice([0, 3, 4, 5, 7, 8, 10, 16, 128])))
    return c


def gen_cases(tok, out):
    rng = random.Random(1234)
    cases = hard_cases() + programmatic_cases(rng)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for a, b, m in cases:
            ids, types = encode(tok, a, b, m)
            d = {"text_a": a}
            if b is not None:
                d["text_b"] = b
            d["max_len"] = m
            d["input_ids"] = ids
            d["token_type_ids"] = types
            f.write(json.dumps(d, ensure_ascii=True) + "\n")
    return len(cases)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"))
    ap.add_argument("--only", choices=["glue", "codepoints", "cases"])
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, "cases"):
        n = gen_cases(tok, os.path.join(args.out, "tokenizer_cases.jsonl"))
        print("tokenizer_cases.jsonl: %d cases" % n)
    if args.only in (None, "codepoints"):
        n = gen_codepoints(tok, os.path.join(args.out, "tokenizer_codepoints.tsv"))
        print("tokenizer_codepoints.tsv: %d blocks" % n)
    if args.only in (None, "glue"):
        n = gen_glue(tok, args.data, os.path.join(args.out, "tokenizer_glue.tsv"))
        print("tokenizer_glue.tsv: %d rows" % n)


if __name__ == "__main__":
    sys.exit(main())
