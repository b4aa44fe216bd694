/* The normalizers: a piece of raw text into characters, each with the byte span of the raw
 * character the reference's alignments give it. BertNormalizer is a per-character map
 * (tok_unicode.c) plus NFD's canonical reordering of combining marks; where that reordering
 * moves anything, the text is redone step by step with NFD's exact spans (bert_exact). Other
 * normalizers run as a Sequence of steps. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

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

/* The reference's transform: each output character comes with a change, which the steps below
 * store in out->beg until the spans replace it here. 0 replaces the next input character and
 * takes its span; -N does that and also drops the N input characters after it; +N inserts a
 * character, which takes the span of the input character before the cursor ((a, a) at the
 * very start, a the piece's first byte). Input characters no change consumes are dropped. */
static void deal_spans(const petl_tok_text *in, int32_t a, petl_tok_text *out) {
    size_t cur = 0;
    for (size_t p = 0; p < out->n; p++) {
        int32_t chg = out->beg[p];
        if (chg > 0) {
            out->beg[p] = cur > 0 ? in->beg[cur - 1] : a;
            out->end[p] = cur > 0 ? in->end[cur - 1] : a;
        } else if (cur < in->n) {
            out->beg[p] = in->beg[cur];
            out->end[p] = in->end[cur];
            cur += 1 + (size_t)-chg;
        } else { /* (no change stream the normalizers make gets here) */
            out->beg[p] = out->end[p] = in->n > 0 ? in->end[in->n - 1] : a;
        }
    }
}

/* NFD / NFKD as the reference's alignments come out of it: every character's decomposition,
 * its first character a replacement (change 0) and the others insertions (+1); the canonical
 * ordering sorts each run of marks carrying those changes along. The spans are dealt out
 * afterwards in output order (deal_spans), so a mark that moves in front of another input
 * character's mark takes that one's span. */
static void decompose(bool compat, const petl_tok_text *in, petl_tok_text *out) {
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
                out->beg[i] = out->beg[i - 1];
                i--;
            }
            out->cp[i] = o[q];
            out->ccc[i] = cc;
            out->beg[i] = q > 0;
        }
    }
}

/* The primary composite of the pair (a, b), or -1: utf8proc's tables with the composition
 * exclusions (UTF8PROC_STABLE). No composite has a second character below U+0300. The
 * reference's tables predate U+11938 DIVES AKURU VOWEL SIGN O (Unicode 13), the one composite
 * added since (petl_uc_decompose keeps it whole too). */
static int32_t compose_pair(int32_t a, int32_t b) {
    if (b < 0x300) return -1;
    utf8proc_int32_t buf[2] = {a, b};
    return utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE) == 1 &&
                   buf[0] != 0x11938
               ? buf[0]
               : -1;
}

/* Canonical composition of a decomposed text in place, the changes (in t->beg) carried as the
 * reference's recomposition does: a composite takes its starter's change plus its mark's,
 * minus one (the mark is gone). So "e" + U+0301 typed apart becomes one character that
 * replaces "e" and drops the mark (-1), and a precomposed character comes back to 0. A mark is
 * blocked from its starter by a starter or a mark of the same or a higher class between them. */
static void compose(petl_tok_text *t) {
    size_t w = 0, s = 0;
    bool have_starter = false;
    int last = -1; /* class of the last mark kept since the starter; -1: none */
    for (size_t i = 0; i < t->n; i++) {
        int32_t c = t->cp[i], cc = t->ccc[i], chg = t->beg[i], x;
        if (have_starter && last < cc && (x = compose_pair(t->cp[s], c)) >= 0) {
            t->cp[s] = x;
            t->beg[s] += chg - 1;
            continue;
        }
        t->cp[w] = c, t->ccc[w] = (uint8_t)cc, t->beg[w] = chg;
        if (cc == 0)
            s = w, have_starter = true, last = -1;
        else if (have_starter)
            last = cc;
        w++;
    }
    t->n = w;
}

/* SentencePiece's charsmap lookup (a darts-clone double array) as the reference does it: the
 * replacement of the SHORTEST prefix of key[0 .. len) that has one (the walk stops at a NUL
 * byte), as an offset into the blob; -1 when none; -2 when the walk leaves the array (a broken
 * file, where the reference panics). */
static long trie_first(const petl_norm_step *s, const unsigned char *key, size_t len) {
    const uint32_t *u = s->trie;
    size_t pos = (u[0] >> 10) << ((u[0] & (1u << 9)) >> 6);
    long found = -1;
    for (size_t i = 0; i < len && key[i]; i++) {
        pos ^= key[i];
        if (pos >= s->n_trie) return -2;
        uint32_t unit = u[pos];
        if ((unit & ((1u << 31) | 0xFFu)) != key[i]) break;
        pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if ((unit >> 8) & 1) {
            if (pos >= s->n_trie) return -2;
            if (found < 0) found = (long)(u[pos] & 0x7FFFFFFFu);
        }
    }
    return found;
}

/* Appends the replacement at blob[at] (up to its NUL) for a chunk of `old` characters, with the
 * reference's changes: each character replaces one (0), except that the last (new - old)
 * become insertions when the replacement is longer, and the last character written so far
 * (maybe an earlier chunk's, when the replacement is empty) drops the rest when it is shorter.
 * `left`: input characters still to come (room is kept for them). */
static petl_status put_replacement(const petl_norm_step *s, long at, size_t old, size_t left,
                                   petl_tok_text *out, petl_error *err) {
    if ((size_t)at > s->n_blob || (at < (long)s->n_blob && (s->blob[at] & 0xC0) == 0x80))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "normalizer \"Precompiled\": a charsmap entry points outside its strings");
    size_t end = (size_t)at;
    while (end < s->n_blob && s->blob[end])
        end++;
    petl_status st;
    if (out->n + (end - (size_t)at) + left > out->cap &&
        (st = petl_tok_text_reserve(out, 2 * (out->n + (end - (size_t)at) + left), err)) != PETL_OK)
        return st;
    size_t first = out->n;
    for (size_t i = (size_t)at; i < end;) {
        int32_t c;
        i += petl_utf8_decode((const unsigned char *)s->blob + i, end - i, &c);
        put(out, c, 0, 0);
    }
    size_t added = out->n - first;
    for (size_t k = old; k < added; k++)
        out->beg[first + k] = 1;
    if (added < old && out->n > 0) out->beg[out->n - 1] -= (int32_t)(old - added);
    return PETL_OK;
}

/* Precompiled (SentencePiece's normalization rules) as the reference runs it: per extended
 * grapheme cluster (utf8proc's segmentation), the whole cluster's replacement when it is under 6
 * bytes and has one, else each character's replacement or the character itself. */
static petl_status precompiled_step(const petl_norm_step *s, const petl_tok_text *in,
                                    petl_tok_text *out, petl_error *err) {
    static const char broken[] = "normalizer \"Precompiled\": the charsmap's trie is broken";
    char key[24];
    for (size_t g = 0, h; g < in->n; g = h) {
        utf8proc_int32_t state = 0;
        for (h = g + 1;
             h < in->n && !utf8proc_grapheme_break_stateful(in->cp[h - 1], in->cp[h], &state); h++)
            ;
        long at = -1;
        if (h - g < 6) { /* (6 characters are 6 bytes or more) */
            size_t len = 0;
            for (size_t k = g; k < h; k++)
                len += petl_utf8_encode(in->cp[k], key + len);
            if (len < 6 && (at = trie_first(s, (const unsigned char *)key, len)) == -2)
                return petl_fail(err, PETL_ERR_FORMAT, broken);
        }
        petl_status st;
        if (at >= 0) {
            if ((st = put_replacement(s, at, h - g, in->n - h, out, err)) != PETL_OK) return st;
            continue;
        }
        for (size_t k = g; k < h; k++) {
            size_t len = petl_utf8_encode(in->cp[k], key);
            if ((at = trie_first(s, (const unsigned char *)key, len)) == -2)
                return petl_fail(err, PETL_ERR_FORMAT, broken);
            if (at < 0)
                put(out, in->cp[k], 0, 0);
            else if ((st = put_replacement(s, at, 1, in->n - k - 1, out, err)) != PETL_OK)
                return st;
        }
    }
    return PETL_OK;
}

/* BertNormalizer step by step, as the reference runs it, for the texts where NFD reorders
 * kept marks: clean_text and CJK spacing, then NFD with its exact spans (decompose),
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
        (st = petl_tok_text_reserve(&t[1], 8 * t[0].n + 1, err)) == PETL_OK) {
        decompose(false, &t[0], &t[1]);
        deal_spans(&t[0], 0, &t[1]); /* (NFD never inserts first: no use for the start) */
        cur = &t[1];
    }
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
    case PETL_NORM_NFKD:
    case PETL_NORM_NFC:
    case PETL_NORM_NFKC:
        decompose(s->kind == PETL_NORM_NFKD || s->kind == PETL_NORM_NFKC, in, out);
        if (s->kind == PETL_NORM_NFC || s->kind == PETL_NORM_NFKC) compose(out);
        deal_spans(in, origin, out);
        return PETL_OK;
    case PETL_NORM_PRECOMPILED:
        if ((st = precompiled_step(s, in, out, err)) == PETL_OK) deal_spans(in, origin, out);
        return st;
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
