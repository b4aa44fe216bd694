/* The models: a word (a range of normalized characters) into tokens of the vocabulary, each
 * with the raw byte span of its characters. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* The word's UTF-8 into w->bytes, with the byte offset of each character in w->boff[0..n]. */
static petl_status word_bytes(petl_tok_work *w, size_t i, size_t n, petl_error *err) {
    if (4 * n > w->cap_bytes) {
        char *b = realloc(w->bytes, 4 * n);
        if (!b) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a word of %zu", n);
        w->bytes = b;
        w->cap_bytes = 4 * n;
    }
    if (n + 1 > w->cap_boff) {
        size_t *o = realloc(w->boff, (n + 1) * sizeof *o);
        if (!o) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a word of %zu", n);
        w->boff = o;
        w->cap_boff = n + 1;
    }
    w->boff[0] = 0;
    for (size_t k = 0; k < n; k++)
        w->boff[k + 1] = w->boff[k] + petl_utf8_encode(w->wt->cp[i + k], w->bytes + w->boff[k]);
    return PETL_OK;
}

/* WordPiece: greedy longest-match-first from the left, pieces after the first with the
 * continuing-subword prefix; a word longer than max_input_chars_per_word, or with a position
 * that nothing matches, is one unk spanning the whole word. Candidates longer than the longest
 * token are skipped, which keeps the work per position bounded. Only the model's own tokens
 * count (an added token's content is not a piece). A piece's span runs from its first
 * character's start to its last one's end. */
static petl_status wordpiece(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                             petl_tok_seq *seq, petl_error *err) {
    const petl_tok_text *t = w->wt;
    size_t n = j - i, first = seq->n;
    if (n > tok->max_word_chars)
        return petl_tok_seq_push(seq, tok->unk_id, t->beg[i], t->end[j - 1], err);
    petl_status st = word_bytes(w, i, n, err);
    const size_t *off = w->boff;
    for (size_t start = 0; start < n && st == PETL_OK;) {
        size_t pre = start > 0 ? tok->prefix_len : 0, end = n;
        int32_t id = -1;
        while (end > start && off[end] - off[start] + pre > tok->max_token_len)
            end--;
        for (; end > start; end--) {
            id = petl_tok_vocab_find(tok, tok->prefix, pre, w->bytes + off[start],
                                     off[end] - off[start]);
            if (id >= 0 && id < tok->n_model) break;
            id = -1;
        }
        if (id < 0) {
            seq->n = first;
            return petl_tok_seq_push(seq, tok->unk_id, t->beg[i], t->end[j - 1], err);
        }
        st = petl_tok_seq_push(seq, id, t->beg[i + start], t->end[i + end - 1], err);
        start = end;
    }
    return st;
}

/* ------------------------------------------------------------------------------- BPE */

static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

petl_status petl_tok_bpe_set_merges(petl_tokenizer *tok, const int32_t *pairs,
                                    const int32_t *merged, size_t n, const char *what,
                                    petl_error *err) {
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    tok->merge_keys = calloc(slots, sizeof *tok->merge_keys);
    tok->merge_vals = malloc(2 * slots * sizeof *tok->merge_vals);
    if (!tok->merge_keys || !tok->merge_vals)
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory for %zu merges", what, n);
    tok->n_merge_slots = slots;
    for (size_t r = 0; r < n; r++) {
        uint64_t key = ((uint64_t)(uint32_t)pairs[2 * r] << 32 | (uint32_t)pairs[2 * r + 1]) + 1;
        size_t i = (size_t)mix(key) & (slots - 1);
        while (tok->merge_keys[i] != 0 && tok->merge_keys[i] != key)
            i = (i + 1) & (slots - 1);
        tok->merge_keys[i] = key;
        tok->merge_vals[2 * i] = (uint32_t)r;
        tok->merge_vals[2 * i + 1] = (uint32_t)merged[r];
    }
    return PETL_OK;
}

/* The merge of (a, b): its rank and merged id, or false. */
static bool find_merge(const petl_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                       int32_t *id) {
    if (!tok->merge_keys) return false;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t mask = tok->n_merge_slots - 1;
    for (size_t i = (size_t)mix(key) & mask; tok->merge_keys[i] != 0; i = (i + 1) & mask) {
        if (tok->merge_keys[i] == key) {
            *rank = tok->merge_vals[2 * i];
            *id = (int32_t)tok->merge_vals[2 * i + 1];
            return true;
        }
    }
    return false;
}

/* The character of the word (boff[0..n]: each one's first byte) that holds byte b. */
static size_t char_of(const size_t *boff, size_t n, size_t b) {
    size_t lo = 0, hi = n; /* the last k with boff[k] <= b */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (boff[mid] <= b)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The min-heap of candidate merges: lowest rank first, then leftmost. */
static bool merge_before(const petl_bpe_merge *x, const petl_bpe_merge *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(petl_bpe_merge *h, size_t *n, petl_bpe_merge m) {
    size_t i = (*n)++;
    while (i > 0 && merge_before(&m, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = m;
}

static petl_bpe_merge heap_pop(petl_bpe_merge *h, size_t *n) {
    petl_bpe_merge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_before(&h[c + 1], &h[c])) c++;
        if (!merge_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* Pushes the merge of the symbols at pos and its next, if there is one. */
static void push_pair(const petl_tokenizer *tok, petl_tok_work *w, size_t *nh, int32_t pos) {
    const petl_bpe_symbol *s = w->syms;
    uint32_t rank;
    int32_t id;
    if (pos >= 0 && s[pos].next >= 0 && find_merge(tok, s[pos].id, s[s[pos].next].id, &rank, &id))
        heap_push(w->heap, nh, (petl_bpe_merge){rank, pos, id});
}

/* Appends a symbol of `id` standing for len bytes of the word. */
static void add_symbol(petl_tok_work *w, size_t *n, int32_t id, size_t len) {
    petl_bpe_symbol *s = &w->syms[*n];
    s->id = id;
    s->len = (int32_t)len;
    s->prev = (int32_t)*n - 1;
    s->next = -1;
    if (*n > 0) w->syms[*n - 1].next = (int32_t)*n;
    (*n)++;
}

/* BPE as the reference's merge_word: each character a symbol (with the continuing-subword
 * prefix after the first, the end-of-word suffix on the last), else its bytes' <0xXX> tokens
 * (byte_fallback), else unk (consecutive ones fused with fuse_unk), else nothing; then the
 * merges, lowest rank first and leftmost among equals, a stale candidate skipped when its
 * pair no longer maps to the same merged id. Spans follow the reference's too: each symbol
 * stands for a number of the word's bytes (a character's, one per <0xXX>, the unk's run) and
 * they are laid end to end in symbol order, so that an unk left pending behind byte-fallback
 * symbols takes the bytes after theirs. */
static petl_status bpe(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                       petl_tok_seq *seq, petl_error *err) {
    const petl_tok_text *t = w->wt;
    size_t n = j - i;
    petl_status st = word_bytes(w, i, n, err);
    if (st != PETL_OK) return st;
    if (tok->ignore_merges) {
        int32_t id = petl_tok_vocab_find(tok, "", 0, w->bytes, w->boff[n]);
        if (id >= 0 && id < tok->n_model)
            return petl_tok_seq_push(seq, id, t->beg[i], t->end[j - 1], err);
    }
    size_t cap = 4 * n + 1; /* symbols: at most 4 per character (bytes), 1 per unk */
    if (cap > w->cap_syms) {
        petl_bpe_symbol *s = realloc(w->syms, cap * sizeof *s);
        if (!s) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a word of %zu", n);
        w->syms = s;
        w->cap_syms = cap;
    }
    if (2 * cap > w->cap_heap) { /* each merge pushes at most 2 candidates */
        petl_bpe_merge *h = realloc(w->heap, 2 * cap * sizeof *h);
        if (!h) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a word of %zu", n);
        w->heap = h;
        w->cap_heap = 2 * cap;
    }
    char cand[4 + 2 * 256];
    size_t ns = 0;
    size_t unk_len = 0; /* a pending unk: the bytes it stands for */
    for (size_t k = 0; k < n; k++) {
        const char *c = w->bytes + w->boff[k];
        size_t clen = w->boff[k + 1] - w->boff[k], len = 0;
        int32_t id = -1;
        size_t pre = k > 0 ? tok->prefix_len : 0, suf = k + 1 == n ? tok->suffix_len : 0;
        if (pre + clen + suf <= sizeof cand) {
            if (pre) memcpy(cand, tok->prefix, pre);
            memcpy(cand + pre, c, clen);
            if (suf) memcpy(cand + pre + clen, tok->suffix, suf);
            len = pre + clen + suf;
            id = petl_tok_vocab_find(tok, "", 0, cand, len);
            if (id >= tok->n_model) id = -1;
        }
        if (id >= 0) {
            if (unk_len > 0) add_symbol(w, &ns, tok->unk_id, unk_len);
            unk_len = 0;
            add_symbol(w, &ns, id, clen);
            continue;
        }
        if (tok->byte_fallback) {
            bool all = true;
            for (size_t q = 0; q < clen && all; q++)
                all = tok->byte_ids[(unsigned char)c[q]] >= 0;
            if (all) {
                /* (a pending unk stays pending, as in the reference) */
                for (size_t q = 0; q < clen; q++)
                    add_symbol(w, &ns, tok->byte_ids[(unsigned char)c[q]], 1);
                continue;
            }
        }
        if (tok->unk_id < 0) continue;
        if (unk_len > 0 && !tok->fuse_unk) {
            add_symbol(w, &ns, tok->unk_id, unk_len);
            unk_len = 0;
        }
        unk_len += clen;
    }
    if (unk_len > 0) add_symbol(w, &ns, tok->unk_id, unk_len);
    /* the merges */
    size_t nh = 0;
    for (size_t k = 0; k + 1 < ns; k++)
        push_pair(tok, w, &nh, (int32_t)k);
    petl_bpe_symbol *s = w->syms;
    while (nh > 0) {
        petl_bpe_merge m = heap_pop(w->heap, &nh);
        if (s[m.pos].len == 0 || s[m.pos].next < 0) continue;
        int32_t nx = s[m.pos].next, id;
        uint32_t rank;
        if (!find_merge(tok, s[m.pos].id, s[nx].id, &rank, &id) || id != m.new_id) continue;
        s[m.pos].id = m.new_id;
        s[m.pos].len += s[nx].len;
        s[m.pos].next = s[nx].next;
        s[nx].len = 0;
        if (s[nx].next >= 0) s[s[nx].next].prev = m.pos;
        if (nh + 2 > w->cap_heap) continue; /* cannot happen: room was made for 2 per merge */
        push_pair(tok, w, &nh, s[m.pos].prev);
        push_pair(tok, w, &nh, m.pos);
    }
    size_t at = 0; /* byte position in the word */
    for (int32_t k = ns > 0 ? 0 : -1; k >= 0 && st == PETL_OK; k = s[k].next) {
        size_t from = char_of(w->boff, n, at), to = char_of(w->boff, n, at + (size_t)s[k].len - 1);
        st = petl_tok_seq_push(seq, s[k].id, t->beg[i + from], t->end[i + to], err);
        at += (size_t)s[k].len;
    }
    return st;
}

/* --------------------------------------------------------------------------- Unigram */

/* Appends the tokens of the word's bytes [from, to) that the lattice put together: its piece
 * (looked up again, as the reference does with the string), else its <0xXX> tokens (byte
 * fallback, each spanning all of it), else unk. */
static petl_status unigram_token(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t n,
                                 size_t from, size_t to, petl_tok_seq *seq, petl_error *err) {
    const petl_tok_text *t = w->wt;
    int32_t beg = t->beg[i + char_of(w->boff, n, from)],
            end = t->end[i + char_of(w->boff, n, to - 1)];
    int32_t id = petl_tok_vocab_find(tok, "", 0, w->bytes + from, to - from);
    if (id >= 0 && id < tok->n_model) return petl_tok_seq_push(seq, id, beg, end, err);
    if (tok->byte_fallback) {
        bool all = true;
        for (size_t b = from; b < to && all; b++)
            all = tok->byte_ids[(unsigned char)w->bytes[b]] >= 0;
        petl_status st = PETL_OK;
        for (size_t b = from; all && b < to && st == PETL_OK; b++)
            st = petl_tok_seq_push(seq, tok->byte_ids[(unsigned char)w->bytes[b]], beg, end, err);
        if (all) return st;
    }
    petl_status st = petl_tok_seq_push(seq, tok->unk_id, beg, end, err);
    /* an unk's text is the characters it stands for (trim_offsets looks at its spaces) */
    size_t a = char_of(w->boff, n, from), b = char_of(w->boff, n, to - 1) + 1;
    if (st == PETL_OK)
        petl_tok_count_spaces(t->cp + i + a, b - a, &seq->trim[2 * (seq->n - 1)],
                              &seq->trim[2 * (seq->n - 1) + 1]);
    return st;
}

/* Unigram as the reference's encode_optimized (SentencePiece's): the best-scoring path over
 * the word's byte positions, every vocabulary piece that starts at a character a candidate
 * (shorter first; a later one only replaces a strictly better score), an unknown character
 * (no one-character piece) the unk score; back from the end, consecutive unk pieces fused. */
static petl_status unigram(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                           petl_tok_seq *seq, petl_error *err) {
    size_t n = j - i;
    petl_status st = word_bytes(w, i, n, err);
    if (st != PETL_OK) return st;
    const size_t *off = w->boff;
    size_t size = off[n];
    if (size + 1 > w->cap_lattice) {
        size_t cap = size + 1;
        double *sc = realloc(w->uscore, cap * sizeof *sc);
        if (sc) w->uscore = sc;
        int32_t *a = sc ? realloc(w->ustart, cap * sizeof *a) : NULL;
        if (a) w->ustart = a;
        int32_t *b = a ? realloc(w->uid, cap * sizeof *b) : NULL;
        if (b) w->uid = b;
        int32_t *f = b ? realloc(w->ufwd, cap * sizeof *f) : NULL;
        if (!f) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a word of %zu", n);
        w->ufwd = f;
        w->cap_lattice = cap;
    }
    double *score = w->uscore;
    int32_t *start = w->ustart, *id = w->uid;
    for (size_t p = 0; p <= size; p++)
        score[p] = 0, start[p] = -1, id[p] = -1;
    for (size_t k = 0; k < n; k++) {
        size_t s = off[k];
        double base = score[s];
        bool single = false;
        for (size_t e = k + 1; e <= n && off[e] - s <= tok->max_token_len; e++) {
            int32_t v = petl_tok_vocab_find(tok, "", 0, w->bytes + s, off[e] - s);
            if (v < 0 || v >= tok->n_model) continue;
            double cand = tok->scores[v] + base;
            if (start[off[e]] < 0 || cand > score[off[e]])
                score[off[e]] = cand, start[off[e]] = (int32_t)s, id[off[e]] = v;
            if (e == k + 1) single = true;
        }
        if (!single) {
            double cand = tok->unk_score + base;
            if (start[off[k + 1]] < 0 || cand > score[off[k + 1]])
                score[off[k + 1]] = cand, start[off[k + 1]] = (int32_t)s,
                              id[off[k + 1]] = tok->unk_id;
        }
    }
    /* the best path, back from the end, as forward links (a node's start is final by then) */
    int32_t *fwd = w->ufwd;
    for (size_t end = size; end > 0; end = (size_t)start[end])
        fwd[start[end]] = (int32_t)end;
    /* forwards: each piece a token, a run of unk nodes (an unknown character, or the unk piece
     * itself) one */
    for (size_t p = 0; p < size && st == PETL_OK;) {
        size_t q = (size_t)fwd[p];
        if (id[q] == tok->unk_id)
            while (q < size && id[fwd[q]] == tok->unk_id)
                q = (size_t)fwd[q];
        st = unigram_token(tok, w, i, n, p, q, seq, err);
        p = q;
    }
    return st;
}

petl_status petl_tok_model_run(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                               petl_tok_seq *seq, petl_error *err) {
    if (i >= j) return PETL_OK;
    switch (tok->model) {
    case PETL_MODEL_WORDPIECE: return wordpiece(tok, w, i, j, seq, err);
    case PETL_MODEL_BPE: return bpe(tok, w, i, j, seq, err);
    case PETL_MODEL_UNIGRAM: return unigram(tok, w, i, j, seq, err);
    }
    return petl_fail(err, PETL_ERR_ARG, "unknown model");
}
