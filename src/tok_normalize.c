/* The normalizers: a piece of raw text into characters, each with the byte span of the raw
 * character it came from (the reference's alignments). BertNormalizer is a per-character map
 * (tok_unicode.c) followed by NFD's canonical reordering of combining marks. */
#include "tok_internal.h"

/* Appends c (combining class k) to t. NFD puts each run of marks in canonical order (a stable
 * sort by combining class): an insertion step over the tail of t keeps every run sorted. The
 * marks strip_accents drops never get here, and sorting the kept ones alone gives the same
 * relative order. The spans stay where they are: the reference's alignments are positional
 * (the n-th character out takes the n-th span), so a reordered mark takes its new place's. */
static void push_char(petl_tok_text *t, int32_t c, uint8_t k, int32_t beg, int32_t end) {
    size_t i = t->n++;
    t->beg[i] = beg;
    t->end[i] = end;
    while (k > 0 && i > 0 && t->ccc[i - 1] > k) {
        t->cp[i] = t->cp[i - 1];
        t->ccc[i] = t->ccc[i - 1];
        i--;
    }
    t->cp[i] = c;
    t->ccc[i] = k;
}

void petl_tok_normalizer_init(petl_tokenizer *tok) {
    for (int32_t c = 0; c < 128; c++) {
        int32_t o[PETL_BERT_NORM_MAX];
        uint8_t k[PETL_BERT_NORM_MAX];
        size_t m = 1;
        o[0] = c;
        if (tok->normalizer == PETL_NORM_BERT) m = petl_uc_bert_normalize(&tok->opts, c, o, k);
        /* (an ASCII character gives at most one, never a combining mark) */
        tok->ascii[c] = m == 1 ? (int16_t)o[0] : -1;
    }
}

petl_status petl_tok_normalize(const petl_tokenizer *tok, const char *text, size_t a, size_t b,
                               petl_tok_text *out, petl_error *err) {
    const unsigned char *u = (const unsigned char *)text;
    out->n = 0;
    petl_status st = petl_tok_text_reserve(out, b - a, err);
    if (st != PETL_OK) return st;
    for (size_t i = a; i < b;) {
        if (u[i] < 0x80 && out->n < out->cap) { /* the common case, from a table */
            int16_t r = tok->ascii[u[i]];
            if (r >= 0) push_char(out, r, 0, (int32_t)i, (int32_t)(i + 1));
            i++;
            continue;
        }
        int32_t c, o[PETL_BERT_NORM_MAX];
        uint8_t k[PETL_BERT_NORM_MAX];
        size_t len = petl_utf8_decode(u + i, b - i, &c), m = 1;
        if (len == 0) return petl_fail(err, PETL_ERR_UTF8, "invalid UTF-8 at byte offset %zu", i);
        if (tok->normalizer == PETL_NORM_BERT) {
            m = petl_uc_bert_normalize(&tok->opts, c, o, k);
        } else {
            o[0] = c;
            k[0] = 0;
        }
        if (out->n + m > out->cap) {
            /* at most PETL_BERT_NORM_MAX per raw byte is more than enough: grow once */
            size_t need = out->n + m + (b - i) * 2;
            if ((st = petl_tok_text_reserve(out, need, err)) != PETL_OK) return st;
        }
        for (size_t j = 0; j < m; j++)
            push_char(out, o[j], k[j], (int32_t)i, (int32_t)(i + len));
        i += len;
    }
    return PETL_OK;
}
