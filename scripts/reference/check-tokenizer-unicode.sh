#!/usr/bin/env bash
# Compares the tokenizer's per-character normalization and punctuation / whitespace classes
# with the reference's (tokenizers' BertNormalizer and BertPreTokenizer) for every Unicode
# scalar value, and the canonical reordering for every pair of the marks strip_accents keeps.
# This is how the override tables at the top of src/tokenizer.c were found: run it again when
# utf8proc or the reference changes. Needs the reference venv (.venv-ref) and a C compiler.
# Usage: scripts/reference/check-tokenizer-unicode.sh [MODEL_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:-$root/models/all-MiniLM-L6-v2}
py=${PYTHON:-$root/.venv-ref/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The reference: code point, normalized code points, class (o other, w whitespace, p punct).
"$py" - "$model" "$tmp" <<'PY'
import sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
norm, pre = t.backend_tokenizer.normalizer, t.backend_tokenizer.pre_tokenizer
with open(sys.argv[2] + "/ref.tsv", "w") as f:
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        n = " ".join("%X" % ord(x) for x in norm.normalize_str(c))
        k = {1: "o", 2: "w", 3: "p"}[len(pre.pre_tokenize_str("a" + c + "a"))]
        f.write("%X\t%s\t%s\n" % (cp, n, k))
# Pairs of marks with a combining class (Python's tables, plus the Unicode 15 ones they lack)
# that survive strip_accents, and a few that do not, after "a".
import unicodedata
u15 = [0x10EFD, 0x10EFE, 0x10EFF, 0x11F41, 0x11F42, 0x1E08F, 0x1E4EC, 0x1E4ED, 0x1E4EE, 0x1E4EF]
marks = [cp for cp in range(0x300, 0x110000) if not 0xD800 <= cp <= 0xDFFF
         and (unicodedata.combining(chr(cp)) > 0 or cp in u15)
         and norm.normalize_str("a" + chr(cp)) != "a"]
marks += [0x301, 0x316, 0x334, 0x345, 0x5B0, 0x93C]
with open(sys.argv[2] + "/pairs.tsv", "w") as f:
    for x in marks:
        for y in marks:
            r = norm.normalize_str("a" + chr(x) + chr(y))
            f.write("%X %X\t%s\n" % (x, y, " ".join("%X" % ord(c) for c in r)))
PY

# The same from src/tokenizer.c, compiled into this driver (it uses the static functions).
cat >"$tmp/drv.c" <<'C'
#include "tokenizer.c"
#include <stdio.h>
int main(int argc, char **argv) {
    (void)argc;
    petl_tokenizer_opts o;
    petl_tokenizer_opts_default(&o);
    o.strip_accents = 1;
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/c.tsv", argv[1]);
    FILE *f = fopen(path, "w");
    for (int32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int32_t out[NORM_MAX];
        uint8_t ccc[NORM_MAX];
        size_t n = normalize_char(&o, cp, out, ccc);
        fprintf(f, "%X\t", cp);
        for (size_t i = 0; i < n; i++) fprintf(f, i ? " %X" : "%X", out[i]);
        fprintf(f, "\t%c\n", is_whitespace(cp) ? 'w' : is_punct(cp) ? 'p' : 'o');
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/pairs.tsv", argv[1]);
    FILE *in = fopen(path, "r");
    snprintf(path, sizeof path, "%s/pairs_c.tsv", argv[1]);
    f = fopen(path, "w");
    while (fgets(line, sizeof line, in)) {
        unsigned x, y;
        sscanf(line, "%X %X", &x, &y);
        tok_state s;
        memset(&s, 0, sizeof s);
        int32_t text[3] = {'a', (int32_t)x, (int32_t)y};
        for (int i = 0; i < 3; i++) {
            int32_t out[NORM_MAX];
            uint8_t ccc[NORM_MAX];
            size_t m = normalize_char(&o, text[i], out, ccc);
            for (size_t j = 0; j < m; j++) word_push(&s, out[j], ccc[j]);
        }
        fprintf(f, "%X %X\t", x, y);
        for (size_t i = 0; i < s.n_word; i++) fprintf(f, i ? " %X" : "%X", s.word[i]);
        fputc('\n', f);
    }
    fclose(f);
    fclose(in);
    return 0;
}
C
${CC:-cc} -O2 -std=c11 -D_DEFAULT_SOURCE -I"$root/include" -I"$root/src" "$tmp/drv.c" \
    "$root/src/error.c" -lutf8proc -ljansson -o "$tmp/drv"
"$tmp/drv" "$tmp"
status=0
if ! diff "$tmp/ref.tsv" "$tmp/c.tsv" >"$tmp/d1"; then
    echo "per-character differences (< reference, > petl):"; head -40 "$tmp/d1"; status=1
fi
if ! diff "$tmp/pairs.tsv" "$tmp/pairs_c.tsv" >"$tmp/d2"; then
    echo "mark reordering differences (< reference, > petl):"; head -40 "$tmp/d2"; status=1
fi
[[ $status -eq 0 ]] && echo "all $(wc -l <"$tmp/ref.tsv") scalar values and $(wc -l <"$tmp/pairs.tsv") mark pairs agree"
exit $status
