/* The models: a word (a range of normalized characters) into tokens of the vocabulary, each
 * with the raw byte span of its characters. */
#include "tok_internal.h"

#include <stdlib.h>

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
        w->boff[k + 1] = w->boff[k] + petl_utf8_encode(w->text.cp[i + k], w->bytes + w->boff[k]);
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
    const petl_tok_text *t = &w->text;
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

petl_status petl_tok_model_run(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                               petl_tok_seq *seq, petl_error *err) {
    if (i >= j) return PETL_OK;
    switch (tok->model) {
    case PETL_MODEL_WORDPIECE: return wordpiece(tok, w, i, j, seq, err);
    }
    return petl_fail(err, PETL_ERR_ARG, "unknown model");
}
