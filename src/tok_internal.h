/* The tokenizer's pipeline, shared by its stages (not part of the public API):
 *
 *   raw text --added tokens matched on the raw text (tokenizer.c)--> pieces
 *   --normalizer (tok_normalize.c)--> normalized text, each character with the byte span of
 *     the raw character it came from
 *   --added tokens matched on the normalized text (tokenizer.c)--> pieces
 *   --pre-tokenizer (tok_pretokenize.c)--> words
 *   --model (tok_models.c)--> tokens (id + raw byte span)
 *   --truncation + post-processor template (tokenizer.c)--> petl_encoding
 *
 * A tokenizer comes from vocab.txt (+ tokenizer_config.json: tokenizer.c builds the BERT
 * pipeline) or from tokenizer.json (tok_json.c reads every stage from the file). Character
 * classes as the reference's Rust crates see them are in tok_unicode.c. */
#ifndef PETL_TOK_INTERNAL_H
#define PETL_TOK_INTERNAL_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ UTF-8 and character classes */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4) with its scalar in *cp, or 0 when it is
 * invalid (overlong, surrogate, above U+10FFFF, truncated, a stray continuation byte). */
size_t petl_utf8_decode(const unsigned char *s, size_t n, int32_t *cp);
/* Offset of the first invalid byte of s[0..n), or n when all of it is valid UTF-8. */
size_t petl_utf8_check(const char *s, size_t n);
/* Writes the UTF-8 form of a scalar value to out[0..4); returns its length. */
size_t petl_utf8_encode(int32_t cp, char *out);

/* Rust's char::is_whitespace (Unicode White_Space): also regex's \s. */
bool petl_uc_is_whitespace(int32_t c);
/* BertPreTokenizer's punctuation: printable non-alphanumeric ASCII or Unicode P* (old tables). */
bool petl_uc_is_bert_punct(int32_t c);
/* Regex \w (Unicode): letters, marks, decimal digits, letter numbers, connector punctuation,
 * join controls: single_word added tokens need it. */
bool petl_uc_is_word(int32_t c);

/* The general categories of Unicode as the reference's regex engine (Oniguruma) has them, for
 * \p{..} and \d: petl_uprop_runs covers every scalar value in code point order with maximal
 * runs lo..hi of one category, an index into petl_uprop_names ("Lu" ... "Cn"). Generated from
 * the reference into tok_uprops.c (scripts/reference/gen-unicode-props.py). */
#define PETL_UPROP_N 29
typedef struct {
    uint32_t lo, hi;
    uint8_t cat;
} petl_uprop_run;
extern const char petl_uprop_names[PETL_UPROP_N][3];
extern const petl_uprop_run petl_uprop_runs[];
extern const size_t petl_uprop_n_runs;

/* Canonical decomposition of one scalar (not reordered) into out[8]; its canonical combining
 * class; Rust's char::to_lowercase into out[2] (the counts returned): the reference's tables
 * (tok_unicode.c says where they differ from utf8proc's). */
size_t petl_uc_decompose(int32_t c, int32_t *out);
/* Compatibility decomposition (NFKD's, not reordered) into out[32]. */
size_t petl_uc_decompose_compat(int32_t c, int32_t *out);
int petl_uc_combining_class(int32_t c);
size_t petl_uc_lowercase(int32_t c, int32_t *out);
/* Rust's char::is_numeric (N*, Unicode 16), the Digits pre-tokenizer's test. */
bool petl_uc_is_numeric(int32_t c);
/* A combining mark (M*) as StripAccents sees it. */
bool petl_uc_is_mark(int32_t c);

/* BertNormalizer's first two steps on one scalar (clean_text, CJK spacing): 0 to 3 characters
 * into out; and the marks its strip_accents drops. */
size_t petl_uc_bert_prepare(const petl_tokenizer_opts *o, int32_t c, int32_t *out);
bool petl_uc_is_bert_mark(int32_t c);

/* BertNormalizer on one scalar (every step of it is a per-character map): writes at most
 * PETL_BERT_NORM_MAX characters to out and their canonical combining classes (for NFD's
 * reordering, 0 without NFD) to ccc; returns the count, 0 when the character is dropped. o has
 * strip_accents resolved to 0 or 1. */
#define PETL_BERT_NORM_MAX 8
size_t petl_uc_bert_normalize(const petl_tokenizer_opts *o, int32_t c, int32_t *out, uint8_t *ccc);

/* ------------------------------------------------------------------------------- stages */

typedef enum {
    PETL_NORM_NONE,
    PETL_NORM_BERT,
    PETL_NORM_LOWERCASE,
    PETL_NORM_STRIP_ACCENTS,
    PETL_NORM_NFD,
    PETL_NORM_NFKD,
    PETL_NORM_STRIP,
    PETL_NORM_PREPEND,
    PETL_NORM_REPLACE,
    PETL_NORM_NFC,
    PETL_NORM_NFKC,
    PETL_NORM_PRECOMPILED
} petl_tok_normalizer;
/* One step of a normalizer Sequence (every normalizer is one; BertNormalizer's settings are
 * tok->opts). */
typedef struct {
    petl_tok_normalizer kind;
    bool left, right; /* Strip */
    int32_t *prepend; /* Prepend: owned code points (Replace: the content) */
    size_t n_prepend;
    void *re; /* Replace: what it replaces, compiled (petl_tok_regex_compile) */
    uint32_t *trie; /* Precompiled: owned [n_trie] SentencePiece's double-array units */
    size_t n_trie;
    char *blob; /* Precompiled: owned [n_blob] the replacements, each ending at a NUL */
    size_t n_blob;
} petl_norm_step;
typedef enum {
    PETL_PRE_NONE,
    PETL_PRE_BERT,
    PETL_PRE_BYTELEVEL,
    PETL_PRE_METASPACE,
    PETL_PRE_WHITESPACE,
    PETL_PRE_WHITESPACE_SPLIT,
    PETL_PRE_PUNCTUATION,
    PETL_PRE_DIGITS,
    PETL_PRE_SPLIT
} petl_tok_pre_tokenizer;
/* How a split treats what it splits on (the reference's SplitDelimiterBehavior). */
typedef enum {
    PETL_SPLIT_REMOVED,
    PETL_SPLIT_ISOLATED,
    PETL_SPLIT_MERGED_WITH_PREVIOUS,
    PETL_SPLIT_MERGED_WITH_NEXT,
    PETL_SPLIT_CONTIGUOUS
} petl_tok_split_behavior;
/* A Split pre-tokenizer: its pattern (String or Regex) compiled, what it does with the matches,
 * and whether the matches are the pieces between them instead (invert). */
typedef struct {
    void *re;
    petl_tok_split_behavior behavior;
    bool invert;
} petl_tok_split;
typedef enum { PETL_PREPEND_ALWAYS, PETL_PREPEND_FIRST, PETL_PREPEND_NEVER } petl_tok_prepend;
typedef enum { PETL_MODEL_WORDPIECE, PETL_MODEL_BPE, PETL_MODEL_UNIGRAM } petl_tok_model;

/* An added token ("added_tokens" of tokenizer.json; the special tokens of a vocab.txt). */
typedef struct {
    char *content;   /* owned, NUL-terminated */
    size_t len;      /* strlen(content) */
    int32_t *norm;   /* owned: content after the normalizer (normalized tokens only) */
    size_t n_norm;   /* code points in norm */
    int32_t id;      /* its id in the vocabulary */
    bool normalized; /* matched on the normalized text (else on the raw text) */
    bool single_word, lstrip, rstrip;
} petl_added_token;

/* One piece of a post-processor template: sequence A, sequence B or special ids. */
typedef enum { PETL_PIECE_A, PETL_PIECE_B, PETL_PIECE_SPECIAL } petl_piece_kind;
typedef struct {
    petl_piece_kind kind;
    int32_t type_id;
    size_t first, n; /* PETL_PIECE_SPECIAL: ids tpl_ids[first .. first + n) */
} petl_tpl_piece;
typedef struct {
    petl_tpl_piece *pieces; /* owned */
    size_t n;
    size_t n_added; /* special ids in it: what truncation leaves room for */
} petl_template;

struct petl_tokenizer {
    /* Vocabulary: id -> token (every id 0 .. n_vocab-1 has one) and token -> id. */
    char *buf;            /* owned: every token, NUL-terminated */
    const char **tokens;  /* [n_vocab] pointers into buf */
    uint32_t *token_len;  /* [n_vocab] */
    int32_t n_vocab;      /* the model's tokens, then added tokens that are not among them */
    int32_t n_model;      /* ids below this are the model's: the only ones it may produce */
    int32_t *slots;       /* [n_slots] open addressing: id, or -1 for an empty slot */
    size_t n_slots;       /* power of two, at least 2 * n_vocab */
    size_t max_token_len; /* longest model token in bytes: bounds the WordPiece search */

    petl_tok_normalizer normalizer; /* the only step, else PETL_NORM_NONE with steps: */
    petl_norm_step norm_steps[8];
    size_t n_norm_steps;
    petl_tokenizer_opts opts; /* BertNormalizer's settings (strip_accents resolved to 0 / 1) */
    petl_tok_pre_tokenizer pre_tokenizer; /* the (last) stage */
    petl_tok_pre_tokenizer pre_split[8];  /* a Sequence's splitting stages before it */
    size_t n_pre_split;
    int32_t ms_replacement;                 /* Metaspace's replacement character */
    petl_tok_prepend ms_scheme;             /* ... its prepend_scheme */
    bool ms_split;                          /* ... and split */
    bool prefix_space;                      /* ByteLevel's add_prefix_space */
    petl_tok_split_behavior punct_behavior; /* Punctuation's */
    bool individual_digits;                 /* Digits' */
    petl_tok_split splits[9];               /* the Split stages, in the order they run */
    size_t n_splits;
    void *split_regex; /* ByteLevel's use_regex: the GPT-2 split (pcre2_code *), else NULL */

    petl_tok_model model;
    int32_t unk_id; /* -1: none (BPE drops what it cannot encode) */
    char *prefix;   /* owned: continuing_subword_prefix ("##"; BPE: NULL for none) */
    size_t prefix_len;
    size_t max_word_chars; /* WordPiece's max_input_chars_per_word: longer words are one unk */
    char *suffix;          /* owned: BPE's end_of_word_suffix, NULL for none */
    size_t suffix_len;
    bool fuse_unk, byte_fallback, ignore_merges; /* BPE's options */
    int32_t byte_ids[256]; /* byte_fallback: the id of "<0xXX>", -1 when missing */
    double *scores;        /* Unigram: [n_model] the log probability of each piece */
    double unk_score;      /* Unigram: the lowest score - 10, an unknown character's */
    /* BPE merges: (left id, right id) -> (rank, merged id), open addressing */
    uint64_t *merge_keys; /* [n_merge_slots] ((uint64_t)left << 32 | right) + 1; 0: empty */
    uint32_t *merge_vals; /* [n_merge_slots, 2] rank, merged id */
    size_t n_merge_slots;

    petl_added_token *added; /* owned [n_added] */
    size_t n_added;
    bool first_byte[2][256]; /* [normalized][b]: b starts the UTF-8 of some added token's
                              * pattern, a quick pre-check */

    petl_template single, pair;
    int32_t *tpl_ids; /* owned: the special ids of both templates */
    size_t n_tpl_ids;
    bool trim_offsets;     /* RobertaProcessing's offset trimming (byte-level spaces) */
    bool add_prefix_space; /* ... which spares one leading space of a first token */

    int32_t pad_id;
    int16_t ascii[128]; /* the normalizer's output for each ASCII character: one character, or
                         * -1 when it is dropped (petl_tok_normalizer_init) */
};

#define PETL_FNV_BASIS 0xcbf29ce484222325ull

static inline uint64_t petl_fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Id of the token s[0..n) (optionally after a prefix p[0..np)), or -1. Inline: the models call
 * it for every candidate piece. */
static inline int32_t petl_tok_vocab_find(const petl_tokenizer *tok, const char *p, size_t np,
                                          const char *s, size_t n) {
    if (!tok->slots) return -1;
    size_t mask = tok->n_slots - 1;
    for (size_t i = (size_t)petl_fnv1a(petl_fnv1a(PETL_FNV_BASIS, p, np), s, n) & mask;;
         i = (i + 1) & mask) {
        int32_t id = tok->slots[i];
        if (id < 0) return -1;
        const char *t = tok->tokens[id];
        if (tok->token_len[id] == np + n && (np == 0 || memcmp(t, p, np) == 0) &&
            memcmp(t + np, s, n) == 0)
            return id;
    }
}
/* Sets the vocabulary from n tokens in id order (copied; a later duplicate of a token replaces
 * the earlier one in token -> id, as a HashMap insert does). */
petl_status petl_tok_vocab_set(petl_tokenizer *tok, const char *const *tokens, const uint32_t *lens,
                               int32_t n, const char *what, petl_error *err);

/* The two templates of BertProcessing (cls A sep / cls A sep B sep, B's part of type 1) or,
 * with roberta, RobertaProcessing (cls A sep / cls A sep sep B sep, all of type 0). */
petl_status petl_tok_set_bert_template(petl_tokenizer *tok, int32_t cls, int32_t sep, bool roberta,
                                       petl_error *err);

/* ------------------------------------------------------------------ per-call working state */

/* A text after the normalizer: one entry per character. */
typedef struct {
    int32_t *cp;        /* [n] code points */
    int32_t *beg, *end; /* [n] byte span in the raw text of the character each came from */
    uint8_t *ccc;       /* [n] canonical combining class (NFD reordering), 0 when none */
    size_t n, cap;
} petl_tok_text;

/* Working memory of petl_tok_regex_find: the text in UTF-8 with each byte's character index,
 * and the matches found. */
typedef struct {
    char *bytes;
    size_t *boff;
    size_t cap_bytes;
    size_t *m; /* [n_m, 2] the matches as ranges of characters */
    size_t n_m, cap_m;
    void *md; /* pcre2_match_data */
} petl_tok_regex_scratch;

/* The tokens of one sequence, before the template. */
typedef struct {
    int32_t *ids;  /* [n] */
    int32_t *offs; /* [n, 2] byte spans in the raw text */
    int32_t *trim; /* [n, 2] leading / trailing spaces of the token's text (trim_offsets only) */
    size_t n, cap;
} petl_tok_seq;

/* A piece of a text split by the added tokens: characters [start, stop), an added token
 * when tok is set. */
typedef struct {
    size_t start, stop;
    const petl_added_token *tok;
} petl_tok_segment;

/* A BPE symbol (a run of the word's characters) and a candidate merge. */
typedef struct {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    int32_t len;        /* bytes of the word it stands for; 0: merged away */
} petl_bpe_symbol;
typedef struct {
    uint32_t rank;
    int32_t pos, new_id;
} petl_bpe_merge;

typedef struct {
    petl_tok_text raw;       /* the raw text as characters (each its own span) */
    petl_tok_text text;      /* the normalized piece being worked on */
    petl_tok_text pre;       /* the byte-level characters of a ByteLevel pre-tokenizer */
    const petl_tok_text *wt; /* the text the words are ranges of (text or pre) */
    size_t *words2;          /* a Sequence's words of the stage before */
    size_t cap_words2;
    double *uscore; /* Unigram's lattice: best score, start and id per byte position */
    int32_t *ustart, *uid, *ufwd;
    size_t cap_lattice;
    petl_tok_segment *segs[2]; /* the raw text's / the normalized piece's segments */
    size_t cap_segs[2];
    size_t *words; /* [n_words, 2] ranges of text: the pre-tokenizer's output */
    size_t n_words, cap_words;
    char *bytes; /* the current word in UTF-8 */
    size_t *boff;
    size_t cap_bytes, cap_boff;
    petl_bpe_symbol *syms; /* BPE's working word */
    petl_bpe_merge *heap;
    size_t cap_syms, cap_heap;
    petl_tok_seq seq[2];
    petl_tok_regex_scratch rx; /* Split's matches */
} petl_tok_work;

void petl_tok_work_free(petl_tok_work *w);
/* Makes room for need characters in t (contents kept). */
petl_status petl_tok_text_reserve(petl_tok_text *t, size_t need, petl_error *err);
/* The spaces (whitespace or U+0120, a byte-level space) that s[0..n) starts and ends with: what
 * trim_offsets leaves out of a token's span. */
void petl_tok_count_spaces(const int32_t *s, size_t n, int32_t *lead, int32_t *trail);
/* Appends a token; trim counts are filled in by the caller when needed (0 here). */
petl_status petl_tok_seq_push(petl_tok_seq *s, int32_t id, int32_t beg, int32_t end,
                              petl_error *err);

/* Fills tok->ascii once the normalizer and its options are set (load). */
void petl_tok_normalizer_init(petl_tokenizer *tok);
/* The normalizer: text[a..b) (valid UTF-8) into out, spans relative to text. */
petl_status petl_tok_normalize(const petl_tokenizer *tok, const char *text, size_t a, size_t b,
                               petl_tok_text *out, petl_error *err);
/* The pre-tokenizer: the words of w->text[i..j) into w->words, ranges of w->wt (w->text, or
 * w->pre for a pre-tokenizer that rewrites the characters). */
petl_status petl_tok_pre_tokenize(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                                  petl_error *err);
/* The model on the word t[i..j): its tokens appended to seq. */
petl_status petl_tok_model_run(const petl_tokenizer *tok, petl_tok_work *w, size_t i, size_t j,
                               petl_tok_seq *seq, petl_error *err);

/* The GPT-2 split of the ByteLevel pre-tokenizer, compiled into tok->split_regex when
 * use_regex; and its release (petl_tokenizer_free). */
petl_status petl_tok_bytelevel_init(petl_tokenizer *tok, bool use_regex, const char *what,
                                    petl_error *err);
void petl_tok_bytelevel_free(petl_tokenizer *tok);
/* A pattern of Replace or Split (comp names it in errors): a "String" (literal) matches as it
 * is; a "Regex" has Oniguruma's syntax (the reference's engine) and is translated for PCRE2, or
 * refused where the two would not match the same. *re is freed with petl_tok_regex_free. */
petl_status petl_tok_regex_compile(const char *pattern, bool literal, const char *what,
                                   const char *comp, void **re, petl_error *err);
void petl_tok_regex_free(void *re);
/* pcre2_match of a compiled pattern on the valid UTF-8 s[0..len) from byte at, into md (a
 * pcre2_match_data *): through the JIT where it compiled, else (or when its stack runs out)
 * the interpreter. The return value is pcre2_match's. */
int petl_tok_regex_match(const void *re, const char *s, size_t len, size_t at, void *md);
/* The matches of re in the characters cp[0..n) into s->m, as the reference finds them
 * (leftmost, non-overlapping; none in an empty text). */
petl_status petl_tok_regex_find(const void *re, const int32_t *cp, size_t n,
                                petl_tok_regex_scratch *s, petl_error *err);
void petl_tok_regex_scratch_free(petl_tok_regex_scratch *s);
/* BPE's merges: n pairs of ids (pairs[2k], pairs[2k + 1]) -> merged[k], ranked by order (a
 * later duplicate of a pair replaces the earlier one, as a HashMap collect does). */
petl_status petl_tok_bpe_set_merges(petl_tokenizer *tok, const int32_t *pairs,
                                    const int32_t *merged, size_t n, const char *what,
                                    petl_error *err);

/* ------------------------------------------------------------------------ tokenizer.json */

/* Reads a tokenizer.json (text[0..len), `what` names it in errors) into a zeroed tok. bert,
 * when set, overrides a BertNormalizer's lowercase, strip_accents (-1: follow lowercase) and
 * handle_chinese_chars, as transformers' BertTokenizerFast does with tokenizer_config.json. */
petl_status petl_tok_json_parse(petl_tokenizer *tok, const char *text, size_t len, const char *what,
                                const petl_tokenizer_opts *bert, petl_error *err);
/* Added tokens: the given ones in order, ids resolved as the reference does (the id of the
 * same content in the vocabulary, else the next free id); normalized ones are run through the
 * normalizer. Called once, after the vocabulary, normalizer and model are set. */
typedef struct {
    const char *content;
    bool normalized, single_word, lstrip, rstrip;
} petl_added_spec;
petl_status petl_tok_set_added(petl_tokenizer *tok, const petl_added_spec *specs, size_t n,
                               const char *what, petl_error *err);

#endif
