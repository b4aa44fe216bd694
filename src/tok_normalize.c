/* The normalizers: a piece of raw text into characters, each with the byte span of the raw
 * character the reference's alignments give it. BertNormalizer is a per-character map
 * (tok_unicode.c) plus NFD's canonical reordering of combining marks; where that reordering
 * moves anything, the text is redone step by step with NFD's exact spans (bert_exact). Other
 * normalizers run as a Sequence of steps. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Appends c (combining class k) to t. NFD puts each run of marks in canonical order (a stable
 * sort by combining class): an insertion step over the tail of t keeps every run sorted. The
 * marks strip_accents drops never get here, and sorting the kept ones alone gives the same
 * relative order. Returns whether c moved: the spans are then not simply each source
 * character's, and the caller redoes the text the exact way (bert_exact). */
static bool push_char(petl_tok_text *t, int32_t c, uint8_t k, int32_t beg, int32_t end) {
    size_t i = t->n++, at = i;
    t->beg[i] = beg;
    t->end[i] = end;
    while (k > 0 && i > 0 && t->ccc[i - 1] > k) {
        t->cp[i] = t->cp[i - 1];
        t->ccc[i] = t->ccc[i - 1];
        i--;
    }
    t->cp[i] = c;
    t->ccc[i] = k;
    return i != at;
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

/* ------------------------------------------------------------------ a Sequence of steps */

/* Appends c with the span [beg, end) (no reordering). */
static void put(petl_tok_text *t, int32_t c, int32_t beg, int32_t end) {
    t->cp[t->n] = c;
    t->ccc[t->n] = 0;
    t->beg[t->n] = beg;
    t->end[t->n++] = end;
}

/* NFD / NFKD exactly as the reference's alignments come out of it: every character's
 * decomposition, its first character a replacement (change 0) and the others insertions
 * (+1); the canonical ordering sorts each run of marks carrying those changes along; then
 * the spans are dealt out as the reference's transform does, in output order: a replacement
 * takes the next input character's span, an insertion the span of the input character before
 * (so a mark that moves in front of another input character's mark takes that one's span). */
static petl_status decompose_step(bool compat, const petl_tok_text *in, petl_tok_text *out,
                                  petl_error *err) {
    int8_t *chg = malloc(out->cap + 1);
    if (!chg) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < in->n; k++) {
        int32_t o[32];
        size_t m =
            compat ? petl_uc_decompose_compat(in->cp[k], o) : petl_uc_decompose(in->cp[k], o);
        for (size_t q = 0; q < m; q++) {
            uint8_t cc = (uint8_t)petl_uc_combining_class(o[q]);
            size_t i = out->n++;
            while (cc > 0 && i > 0 && out->ccc[i - 1] > cc) {
                out->cp[i] = out->cp[i - 1];
                out->ccc[i] = out->ccc[i - 1];
                chg[i] = chg[i - 1];
                i--;
            }
            out->cp[i] = o[q];
            out->ccc[i] = cc;
            chg[i] = q > 0;
        }
    }
    for (size_t p = 0, cur = 0; p < out->n; p++) {
        if (chg[p]) { /* an insertion: the span before the cursor ((x, x) at the very start) */
            out->beg[p] = cur > 0 ? in->beg[cur - 1] : in->beg[0];
            out->end[p] = cur > 0 ? in->end[cur - 1] : in->beg[0];
        } else {
            out->beg[p] = in->beg[cur];
            out->end[p] = in->end[cur++];
        }
    }
    free(chg);
    return PETL_OK;
}

/* BertNormalizer step by step, as the reference runs it, for the texts where NFD reorders
 * kept marks: clean_text and CJK spacing, then NFD with its exact spans (decompose_step),
 * the strip_accents filter, lowercase. */
static petl_status bert_exact(const petl_tokenizer *tok, const petl_tok_text *in,
                              petl_tok_text *out, petl_error *err) {
    const petl_tokenizer_opts *op = &tok->opts;
    petl_tok_text t[2] = {{0}, {0}};
    petl_status st = petl_tok_text_reserve(&t[0], 3 * in->n + 1, err);
    for (size_t k = 0; k < in->n && st == PETL_OK; k++) {
        int32_t o[3];
        size_t m = petl_uc_bert_prepare(op, in->cp[k], o);
        for (size_t q = 0; q < m; q++)
            put(&t[0], o[q], in->beg[k], in->end[k]);
    }
    const petl_tok_text *cur = &t[0];
    if (st == PETL_OK && op->strip_accents &&
        (st = petl_tok_text_reserve(&t[1], 8 * t[0].n + 1, err)) == PETL_OK &&
        (st = decompose_step(false, &t[0], &t[1], err)) == PETL_OK)
        cur = &t[1];
    if (st == PETL_OK) st = petl_tok_text_reserve(out, 2 * cur->n + 1, err);
    out->n = 0;
    for (size_t k = 0; k < cur->n && st == PETL_OK; k++) {
        if (op->strip_accents && petl_uc_is_bert_mark(cur->cp[k])) continue;
        int32_t low[2];
        size_t m = op->lowercase ? petl_uc_lowercase(cur->cp[k], low) : (low[0] = cur->cp[k], 1);
        for (size_t q = 0; q < m; q++)
            put(out, low[q], cur->beg[k], cur->end[k]);
    }
    for (int q = 0; q < 2; q++)
        free(t[q].cp), free(t[q].beg), free(t[q].end), free(t[q].ccc);
    return st;
}

/* One step over `in` into `out` (a piece that starts at byte `origin` of the raw text; rx:
 * working memory), each output character with the span the reference's alignments give it: a
 * character made from one keeps that one's; characters a step adds (a decomposition's or a
 * lowercase mapping's tail, a prepended string) take the span of the one they come with; NFD's
 * reordering keeps the spans in place (they are positional). */
static petl_status step(const petl_tokenizer *tok, const petl_norm_step *s, const petl_tok_text *in,
                        int32_t origin, petl_tok_regex_scratch *rx, petl_tok_text *out,
                        petl_error *err) {
    out->n = 0;
    petl_status st = petl_tok_text_reserve(out, 32 * in->n + s->n_prepend + 1, err);
    if (st != PETL_OK) return st;
    size_t lo = 0, hi = in->n;
    switch (s->kind) {
    case PETL_NORM_STRIP:
        while (s->left && lo < hi && petl_uc_is_whitespace(in->cp[lo]))
            lo++;
        while (s->right && hi > lo && petl_uc_is_whitespace(in->cp[hi - 1]))
            hi--;
        for (size_t k = lo; k < hi; k++)
            put(out, in->cp[k], in->beg[k], in->end[k]);
        return PETL_OK;
    case PETL_NORM_REPLACE:
        /* every match becomes the content, whose characters take the span of the last character
         * the match covers (the reference inserts them after it); an empty match takes the
         * character's before it, at the very start the empty span where the piece starts */
        if ((st = petl_tok_regex_find(s->re, in->cp, in->n, rx, err)) != PETL_OK) return st;
        for (size_t q = 0, k = 0; q <= rx->n_m; q++) {
            size_t a = q < rx->n_m ? rx->m[2 * q] : in->n, b = q < rx->n_m ? rx->m[2 * q + 1] : 0;
            size_t add = (a - k) + (q < rx->n_m ? s->n_prepend : 0);
            if (out->n + add > out->cap &&
                (st = petl_tok_text_reserve(out, out->n + add + in->n, err)) != PETL_OK)
                return st;
            for (; k < a; k++)
                put(out, in->cp[k], in->beg[k], in->end[k]);
            if (q == rx->n_m) break;
            int32_t beg = b > 0 ? in->beg[b - 1] : origin, end = b > 0 ? in->end[b - 1] : origin;
            for (size_t c = 0; c < s->n_prepend; c++)
                put(out, s->prepend[c], beg, end);
            k = b;
        }
        return PETL_OK;
    case PETL_NORM_PREPEND:
        for (size_t k = 0; in->n > 0 && k < s->n_prepend; k++)
            put(out, s->prepend[k], in->beg[0], in->end[0]);
        for (size_t k = 0; k < in->n; k++)
            put(out, in->cp[k], in->beg[k], in->end[k]);
        return PETL_OK;
    case PETL_NORM_NFD:
    case PETL_NORM_NFKD: return decompose_step(s->kind == PETL_NORM_NFKD, in, out, err);
    default: break;
    }
    for (size_t k = 0; k < in->n; k++) {
        int32_t c = in->cp[k], o[32];
        uint8_t cc[32];
        size_t m = 0;
        switch (s->kind) {
        case PETL_NORM_BERT: m = petl_uc_bert_normalize(&tok->opts, c, o, cc); break;
        case PETL_NORM_LOWERCASE: m = petl_uc_lowercase(c, o); break;
        case PETL_NORM_STRIP_ACCENTS:
            if (!petl_uc_is_mark(c)) o[m++] = c;
            break;
        default: o[m++] = c; break;
        }
        bool reorder = s->kind == PETL_NORM_BERT;
        for (size_t q = 0; q < m; q++)
            push_char(out, o[q], reorder ? cc[q] : 0, in->beg[k], in->end[k]);
    }
    return PETL_OK;
}

/* The steps of a Sequence: the raw text as characters, then each step in turn. */
static petl_status steps(const petl_tokenizer *tok, const char *text, size_t a, size_t b,
                         petl_tok_text *out, petl_error *err) {
    petl_tok_text t[2] = {{0}, {0}};
    petl_status st = petl_tok_text_reserve(&t[0], b - a + 1, err);
    for (size_t i = a; i < b && st == PETL_OK;) {
        int32_t c;
        size_t len = petl_utf8_decode((const unsigned char *)text + i, b - i, &c);
        if (len == 0) {
            st = petl_fail(err, PETL_ERR_UTF8, "invalid UTF-8 at byte offset %zu", i);
            break;
        }
        put(&t[0], c, (int32_t)i, (int32_t)(i + len));
        i += len;
    }
    size_t cur = 0;
    petl_tok_regex_scratch rx = {0};
    for (size_t k = 0; k < tok->n_norm_steps && st == PETL_OK; k++, cur ^= 1)
        st = step(tok, &tok->norm_steps[k], &t[cur], (int32_t)a, &rx, &t[cur ^ 1], err);
    petl_tok_regex_scratch_free(&rx);
    if (st == PETL_OK && (st = petl_tok_text_reserve(out, t[cur].n + 1, err)) == PETL_OK) {
        memcpy(out->cp, t[cur].cp, t[cur].n * sizeof *out->cp);
        memcpy(out->beg, t[cur].beg, t[cur].n * sizeof *out->beg);
        memcpy(out->end, t[cur].end, t[cur].n * sizeof *out->end);
        memcpy(out->ccc, t[cur].ccc, t[cur].n * sizeof *out->ccc);
        out->n = t[cur].n;
    }
    for (int q = 0; q < 2; q++)
        free(t[q].cp), free(t[q].beg), free(t[q].end), free(t[q].ccc);
    return st;
}

petl_status petl_tok_normalize(const petl_tokenizer *tok, const char *text, size_t a, size_t b,
                               petl_tok_text *out, petl_error *err) {
    if (tok->n_norm_steps > 0) return steps(tok, text, a, b, out, err);
    const unsigned char *u = (const unsigned char *)text;
    out->n = 0;
    petl_status st = petl_tok_text_reserve(out, b - a, err);
    if (st != PETL_OK) return st;
    /* Whether NFD reorders anything, dropped marks included (their reordering moves the kept
     * characters' spans too): the combining class of the last character NFD saw. */
    bool strip = tok->normalizer == PETL_NORM_BERT && tok->opts.strip_accents, moved = false;
    int last_ccc = 0;
    for (size_t i = a; i < b;) {
        if (u[i] < 0x80 && out->n < out->cap) { /* the common case, from a table */
            int16_t r = tok->ascii[u[i]];
            if (r >= 0) {
                push_char(out, r, 0, (int32_t)i, (int32_t)(i + 1));
                last_ccc = 0;
            }
            i++;
            continue;
        }
        int32_t c, o[PETL_BERT_NORM_MAX];
        uint8_t k[PETL_BERT_NORM_MAX];
        size_t len = petl_utf8_decode(u + i, b - i, &c), m = 1;
        if (len == 0) return petl_fail(err, PETL_ERR_UTF8, "invalid UTF-8 at byte offset %zu", i);
        if (tok->normalizer == PETL_NORM_BERT) {
            m = petl_uc_bert_normalize(&tok->opts, c, o, k);
            int32_t pre[3], d[8];
            for (size_t x = 0, np = strip ? petl_uc_bert_prepare(&tok->opts, c, pre) : 0; x < np;
                 x++) {
                for (size_t q = 0, nd = petl_uc_decompose(pre[x], d); q < nd; q++) {
                    int cc = petl_uc_combining_class(d[q]);
                    moved |= cc > 0 && cc < last_ccc;
                    last_ccc = cc;
                }
            }
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
            moved |= push_char(out, o[j], k[j], (int32_t)i, (int32_t)(i + len));
        i += len;
    }
    if (!moved) return PETL_OK;
    /* NFD moved a kept mark: the slow, exact way (rare: marks strip_accents keeps) */
    petl_tok_text raw = {0};
    if ((st = petl_tok_text_reserve(&raw, b - a + 1, err)) == PETL_OK) {
        for (size_t i = a; i < b;) {
            int32_t c;
            size_t len = petl_utf8_decode(u + i, b - i, &c);
            put(&raw, c, (int32_t)i, (int32_t)(i + len));
            i += len;
        }
        st = bert_exact(tok, &raw, out, err);
    }
    free(raw.cp), free(raw.beg), free(raw.end), free(raw.ccc);
    return st;
}
