/* The pre-tokenizers: a piece of normalized text into words (ranges of its characters). */
#include "tok_internal.h"

#include <stdlib.h>

static petl_status push_word(petl_tok_work *w, size_t i, size_t j, petl_error *err) {
    if (w->n_words == w->cap_words) {
        size_t cap = w->cap_words ? 2 * w->cap_words : 64;
        size_t *p = realloc(w->words, 2 * cap * sizeof *p);
        if (!p) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu words", cap);
        w->words = p;
        w->cap_words = cap;
    }
    w->words[2 * w->n_words] = i;
    w->words[2 * w->n_words + 1] = j;
    w->n_words++;
    return PETL_OK;
}

/* BertPreTokenizer: split on whitespace (dropped), every punctuation character a word. */
static petl_status bert(petl_tok_work *w, size_t i, size_t j, petl_error *err) {
    const int32_t *cp = w->text.cp;
    size_t start = i;
    bool in_word = false;
    petl_status st = PETL_OK;
    for (size_t k = i; k < j && st == PETL_OK; k++) {
        if (petl_uc_is_whitespace(cp[k])) {
            if (in_word) st = push_word(w, start, k, err);
            in_word = false;
        } else if (petl_uc_is_bert_punct(cp[k])) {
            if (in_word) st = push_word(w, start, k, err);
            if (st == PETL_OK) st = push_word(w, k, k + 1, err);
            in_word = false;
        } else if (!in_word) {
            start = k;
            in_word = true;
        }
    }
    if (st == PETL_OK && in_word) st = push_word(w, start, j, err);
    return st;
}

petl_status petl_tok_pre_tokenize(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                                  petl_error *err) {
    w->n_words = 0;
    switch (tok->pre_tokenizer) {
    case PETL_PRE_BERT: return bert(w, i, j, err);
    case PETL_PRE_NONE: break;
    }
    return i < j ? push_word(w, i, j, err) : PETL_OK;
}
