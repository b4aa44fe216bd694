/* The pre-tokenizers: a piece of normalized text into words (ranges of its characters). The
 * ByteLevel and Metaspace ones rewrite the characters too (every UTF-8 byte becomes one
 * printable character; spaces become U+2581), so their words are ranges of w->pre. */
#include "tok_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------------------------------- ByteLevel */

/* GPT-2's split, the reference's pattern, translated for PCRE2 as a Split's Regex is (its \s,
 * \S and \p{..} become classes of the reference's Unicode tables). */
static const char GPT2_SPLIT[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

petl_status petl_tok_bytelevel_init(petl_tokenizer *tok, bool use_regex, const char *what,
                                    petl_error *err) {
    tok->pre_tokenizer = PETL_PRE_BYTELEVEL;
    if (!use_regex) return PETL_OK;
    return petl_tok_regex_compile(GPT2_SPLIT, false, what, "the ByteLevel split", &tok->split_regex,
                                  err);
}

void petl_tok_bytelevel_free(petl_tokenizer *tok) {
    pcre2_code_free(tok->split_regex);
    tok->split_regex = NULL;
}

/* The printable character GPT-2 maps byte b to: itself when printable (! to ~, U+00A1 to
 * U+00AC, U+00AE to U+00FF), else U+0100 + its rank among the others. */
static int32_t byte_char(unsigned b) {
    if (b <= 0x20) return 0x100 + (int32_t)b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (int32_t)(b - 0x7F);
    if (b == 0xAD) return 0x100 + 33 + 34;
    return (int32_t)b;
}

/* The piece being split: w->text[i..) with, when pfx, a space before it that spans its first
 * character (as the reference's prepend aligns it). Character k of it: */
typedef struct {
    size_t i;
    bool pfx;
} piece;

static size_t piece_at(const piece *p, size_t k, int32_t *c) {
    if (p->pfx && k == 0) {
        *c = ' ';
        return p->i;
    }
    size_t at = p->i + k - (p->pfx ? 1 : 0);
    *c = -1;
    return at;
}

/* One word: the piece's characters [a, b) as byte-level characters appended to w->pre. */
static petl_status push_bytes(petl_tok_work *w, const piece *p, size_t a, size_t b,
                              petl_error *err) {
    const petl_tok_text *t = &w->text;
    size_t start = w->pre.n;
    for (size_t k = a; k < b; k++) {
        int32_t c;
        size_t at = piece_at(p, k, &c);
        if (c < 0) c = t->cp[at];
        char u[4];
        size_t n = petl_utf8_encode(c, u);
        petl_status st = petl_tok_text_reserve(&w->pre, w->pre.n + n, err);
        if (st != PETL_OK) return st;
        for (size_t q = 0; q < n; q++) {
            w->pre.cp[w->pre.n] = byte_char((unsigned char)u[q]);
            w->pre.beg[w->pre.n] = t->beg[at];
            w->pre.end[w->pre.n] = t->end[at];
            w->pre.ccc[w->pre.n++] = 0;
        }
    }
    return w->pre.n > start ? push_word(w, start, w->pre.n, err) : PETL_OK;
}

/* ByteLevel: a space before the piece unless it starts with one (add_prefix_space), the GPT-2
 * split (every match a word, and any text between matches), then each word's UTF-8 bytes as
 * characters. */
static petl_status bytelevel(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                             petl_error *err) {
    const petl_tok_text *t = &w->text;
    if (i >= j) return PETL_OK;
    piece p = {i, tok->prefix_space && t->cp[i] != ' '};
    size_t n = j - i + p.pfx;
    if (!tok->split_regex) return push_bytes(w, &p, 0, n, err);
    /* the piece in UTF-8, with the character index of every byte offset */
    size_t cap = 4 * n + 1;
    if (cap > w->cap_bytes) {
        char *nb = realloc(w->bytes, cap);
        if (!nb) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu characters", n);
        w->bytes = nb;
        w->cap_bytes = cap;
    }
    if (cap > w->cap_boff) {
        size_t *no = realloc(w->boff, cap * sizeof *no);
        if (!no) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu characters", n);
        w->boff = no;
        w->cap_boff = cap;
    }
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t c;
        size_t at = piece_at(&p, k, &c);
        size_t m = petl_utf8_encode(c < 0 ? t->cp[at] : c, w->bytes + len);
        for (size_t q = 0; q < m; q++)
            w->boff[len + q] = k;
        len += m;
    }
    w->boff[len] = n;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    petl_status st = PETL_OK;
    size_t pos = 0, done = 0; /* byte offsets: next search, end of the last word */
    while (st == PETL_OK && pos < len) {
        int rc = petl_tok_regex_match(tok->split_regex, w->bytes, len, pos, md);
        if (rc < 0) break; /* no more matches (or a match limit: the rest is one word) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e <= s) { /* cannot happen with this pattern; never loop */
            for (pos = s + 1; pos < len && ((unsigned char)w->bytes[pos] & 0xC0) == 0x80;)
                pos++;
            continue;
        }
        if (s > done) st = push_bytes(w, &p, w->boff[done], w->boff[s], err);
        if (st == PETL_OK) st = push_bytes(w, &p, w->boff[s], w->boff[e], err);
        done = pos = e;
    }
    if (st == PETL_OK && done < len) st = push_bytes(w, &p, w->boff[done], n, err);
    pcre2_match_data_free(md);
    return st;
}

/* ------------------------------------------------------- Whitespace, WhitespaceSplit */

/* WhitespaceSplit: runs of non-whitespace. Whitespace (the regex \w+|[^\w\s]+): runs of word
 * characters and runs of other non-space characters. */
static petl_status whitespace(petl_tok_work *w, size_t i, size_t j, bool classes, petl_error *err) {
    const int32_t *cp = w->text.cp;
    petl_status st = PETL_OK;
    size_t start = i;
    int cur = 0; /* 0: in spaces, 1: word characters, 2: others */
    for (size_t k = i; k <= j && st == PETL_OK; k++) {
        int c = 0;
        if (k < j && !petl_uc_is_whitespace(cp[k])) c = !classes || petl_uc_is_word(cp[k]) ? 1 : 2;
        if (c == cur) continue;
        if (cur != 0) st = push_word(w, start, k, err);
        start = k;
        cur = c;
    }
    return st;
}

/* ------------------------------------------------------------------------- Metaspace */

/* Metaspace: every ' ' becomes the replacement (U+2581 by default); the replacement is put
 * before the range unless it starts with one (prepend_scheme always; first: only for a range
 * at the start of the text; never), spanning its first character; then each replacement
 * starts a word (merged with what follows; one before another replacement or at the end
 * stands alone), as the reference's MergedWithNext split. */
static petl_status metaspace(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                             int32_t orig_start, petl_error *err) {
    const petl_tok_text *t = &w->text;
    if (i >= j) return PETL_OK;
    int32_t r = tok->ms_replacement;
    int32_t first = t->cp[i] == ' ' ? r : t->cp[i];
    bool pfx = first != r && (tok->ms_scheme == PETL_PREPEND_ALWAYS ||
                              (tok->ms_scheme == PETL_PREPEND_FIRST && orig_start == 0));
    size_t base = w->pre.n;
    petl_status st = petl_tok_text_reserve(&w->pre, base + (j - i) + 1, err);
    if (st != PETL_OK) return st;
    petl_tok_text *o = &w->pre;
    if (pfx)
        o->cp[o->n] = r, o->beg[o->n] = t->beg[i], o->end[o->n] = t->end[i], o->ccc[o->n++] = 0;
    for (size_t k = i; k < j; k++) {
        o->cp[o->n] = t->cp[k] == ' ' ? r : t->cp[k];
        o->beg[o->n] = t->beg[k];
        o->end[o->n] = t->end[k];
        o->ccc[o->n++] = 0;
    }
    if (!tok->ms_split) return push_word(w, base, o->n, err);
    size_t start = base;
    bool open = false;
    for (size_t k = base; k < o->n && st == PETL_OK; k++) {
        if (o->cp[k] != r) {
            if (!open) start = k, open = true;
            continue;
        }
        if (open) st = push_word(w, start, k, err);
        open = false;
        if (st != PETL_OK) break;
        if (k + 1 < o->n && o->cp[k + 1] != r)
            start = k, open = true;
        else
            st = push_word(w, k, k + 1, err);
    }
    if (st == PETL_OK && open) st = push_word(w, start, o->n, err);
    return st;
}

/* --------------------------------------------------------------- Punctuation, Digits */

/* Splits [i, j) on every character that `is` holds for, as the reference's split does: each
 * such character one match, the text between two matches one non-match, folded by behaviour
 * (Removed drops the matches; Isolated keeps every piece; Contiguous joins runs of the same
 * kind; MergedWithPrevious / MergedWithNext join a match to the piece before / after it, only
 * the first / last match of a run). */
static petl_status split_on(petl_tok_work *w, size_t i, size_t j, bool (*is)(int32_t),
                            petl_tok_split_behavior how, petl_error *err) {
    const int32_t *cp = w->text.cp;
    petl_status st = PETL_OK;
    size_t ws = 0, we = 0; /* the word being built */
    bool have = false, prev_match = false;
    for (size_t k = i; k < j && st == PETL_OK;) {
        bool m = is(cp[k]);
        size_t e = k + 1;
        if (!m)
            while (e < j && !is(cp[e]))
                e++;
        bool join = false;
        switch (how) {
        case PETL_SPLIT_REMOVED: break;
        case PETL_SPLIT_ISOLATED: break;
        case PETL_SPLIT_CONTIGUOUS: join = have && m == prev_match; break;
        case PETL_SPLIT_MERGED_WITH_PREVIOUS: join = have && m && !prev_match; break;
        case PETL_SPLIT_MERGED_WITH_NEXT: join = have && prev_match && !m; break;
        }
        if (how == PETL_SPLIT_MERGED_WITH_NEXT && have && prev_match && m) {
            /* a run of matches: only its last one merges with what follows */
            join = false;
        }
        if (join) {
            we = e;
        } else {
            if (have) st = push_word(w, ws, we, err);
            have = !(how == PETL_SPLIT_REMOVED && m);
            ws = k, we = e;
        }
        prev_match = m;
        k = e;
    }
    if (st == PETL_OK && have) st = push_word(w, ws, we, err);
    return st;
}

/* ----------------------------------------------------------------------------- Split */

/* Split: the reference's find_matches on [i, j) (each match and each stretch between two
 * matches one piece, flagged as a match, the flags flipped with invert), then its fold by
 * behaviour: Removed drops the matches; Isolated keeps every piece; Contiguous joins a piece to
 * the one before when both are matches or both are not; MergedWithPrevious joins a match to a
 * non-match before it; MergedWithNext a non-match to a match before it. Empty pieces take part
 * in the fold; only the words left empty are dropped (PreTokenizedString::split). */
static petl_status split_regex(const petl_tok_split *sp, petl_tok_work *w, size_t i, size_t j,
                               petl_error *err) {
    petl_tok_regex_scratch *rx = &w->rx;
    petl_status st = petl_tok_regex_find(sp->re, w->text.cp + i, j - i, rx, err);
    size_t ws = 0, we = 0, at = 0; /* the word being built; the end of the last piece */
    bool have = false, prev = false;
    for (size_t q = 0; q < 2 * rx->n_m + 1 && st == PETL_OK; q++) {
        /* piece q: the stretch before match q / 2 (when q is even), else match q / 2 */
        size_t s, e;
        bool m = q % 2 == 1;
        if (m) {
            s = rx->m[q - 1], e = rx->m[q];
        } else {
            s = at, e = q / 2 < rx->n_m ? rx->m[q] : j - i;
            if (s == e) continue; /* no stretch between */
        }
        at = e;
        m ^= sp->invert;
        bool join = false;
        switch (sp->behavior) {
        case PETL_SPLIT_REMOVED:
        case PETL_SPLIT_ISOLATED: break;
        case PETL_SPLIT_CONTIGUOUS: join = have && m == prev; break;
        case PETL_SPLIT_MERGED_WITH_PREVIOUS: join = have && m && !prev; break;
        case PETL_SPLIT_MERGED_WITH_NEXT: join = have && prev && !m; break;
        }
        prev = m;
        if (join) {
            we = e;
            continue;
        }
        if (have && we > ws) st = push_word(w, i + ws, i + we, err);
        have = !(sp->behavior == PETL_SPLIT_REMOVED && m);
        ws = s, we = e;
    }
    if (st == PETL_OK && have && we > ws) st = push_word(w, i + ws, i + we, err);
    return st;
}

/* ------------------------------------------------------------------------------ stages */

/* One stage on the range [i, j) of w->text, its words appended to w->words (sp: a Split's). */
static petl_status stage(const petl_tokenizer *tok, petl_tok_pre_tokenizer kind,
                         const petl_tok_split *sp, petl_tok_work *w, size_t i, size_t j,
                         int32_t orig_start, petl_error *err) {
    switch (kind) {
    case PETL_PRE_SPLIT: return i < j ? split_regex(sp, w, i, j, err) : PETL_OK;
    case PETL_PRE_BERT: return bert(w, i, j, err);
    case PETL_PRE_BYTELEVEL: return bytelevel(tok, w, i, j, err);
    case PETL_PRE_METASPACE: return metaspace(tok, w, i, j, orig_start, err);
    case PETL_PRE_WHITESPACE: return whitespace(w, i, j, true, err);
    case PETL_PRE_WHITESPACE_SPLIT: return whitespace(w, i, j, false, err);
    case PETL_PRE_PUNCTUATION:
        return split_on(w, i, j, petl_uc_is_bert_punct, tok->punct_behavior, err);
    case PETL_PRE_DIGITS:
        return split_on(w, i, j, petl_uc_is_numeric,
                        tok->individual_digits ? PETL_SPLIT_ISOLATED : PETL_SPLIT_CONTIGUOUS, err);
    case PETL_PRE_NONE: break;
    }
    return i < j ? push_word(w, i, j, err) : PETL_OK;
}

/* A Sequence: the splitting stages one after the other on each word so far, then the last
 * stage (which may rewrite the characters) on each word. */
petl_status petl_tok_pre_tokenize(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                                  petl_error *err) {
    w->n_words = 0;
    w->pre.n = 0;
    bool rewrites =
        tok->pre_tokenizer == PETL_PRE_BYTELEVEL || tok->pre_tokenizer == PETL_PRE_METASPACE;
    w->wt = rewrites ? &w->pre : &w->text;
    /* a range's start in the raw text is its first character's (the reference's
     * offsets_original: characters the normalizer dropped before it do not count) */
    if (tok->n_pre_split == 0)
        return stage(tok, tok->pre_tokenizer, tok->splits, w, i, j, w->text.beg[i], err);
    petl_status st = push_word(w, i, j, err);
    const petl_tok_split *sp = tok->splits; /* the next Split stage's */
    for (size_t s = 0; s <= tok->n_pre_split && st == PETL_OK; s++) {
        petl_tok_pre_tokenizer kind = s < tok->n_pre_split ? tok->pre_split[s] : tok->pre_tokenizer;
        /* the words so far move to words2; this stage refills words */
        size_t *tmp = w->words2, cap = w->cap_words2, n = w->n_words;
        w->words2 = w->words, w->cap_words2 = w->cap_words;
        w->words = tmp, w->cap_words = cap, w->n_words = 0;
        for (size_t k = 0; k < n && st == PETL_OK; k++) {
            size_t a = w->words2[2 * k], b = w->words2[2 * k + 1];
            st = stage(tok, kind, sp, w, a, b, w->text.beg[a], err);
        }
        if (kind == PETL_PRE_SPLIT) sp++;
    }
    return st;
}
