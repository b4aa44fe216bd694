/* SQuAD v1.1: the JSON reader, BERT-style windowed features, span decoding and the official
 * exact-match / F1.
 *
 * public API: to be merged into include/petl.h
 *
 * Reading (petl_squad_load / petl_squad_parse). The file is the official format:
 *   {"version": ..., "data": [{"title": str, "paragraphs": [{"context": str,
 *     "qas": [{"id": str, "question": str, "answers": [{"text": str, "answer_start": int}]}]}]}]}
 * Every rule below is an error (PETL_ERR_FORMAT, or PETL_ERR_UTF8 from the JSON parser) naming
 * the source, the article index and title and, inside a question, its id; nothing is skipped
 * silently, because a training set that quietly loses questions gives numbers nobody can
 * reproduce:
 *   - malformed JSON (with its line and column), duplicate keys, a missing or mistyped field;
 *   - an empty (or whitespace-only) context or question; a duplicate question id;
 *   - an answer whose text is empty, or whose answer_start (a code point offset, as Python
 *     indexes str) plus its length runs past the context, or where context[start : start +
 *     len(text)] is not exactly the text;
 *   - a question with no answers, unless opts.allow_unanswered (for files to predict on, not to
 *     score: v1.1 has no unanswerable questions and the official script cannot score one).
 * The whole file is validated; only the questions of the articles [article_begin, article_end)
 * are kept. The split used here, because only the dev file is available: the first 38 of its
 * 48 articles for training (8,582 questions), the last 10 for evaluation (1,988 questions);
 * no article is in both. Users with the real training file read it whole.
 *
 * Features (petl_squad_featurize): Google's run_squad.py windowing (google-research/bert):
 *   - the question alone is tokenized and cut to its first max_query_len tokens;
 *   - the context is tokenized once, with byte offsets (petl_tokenize_offsets);
 *   - windows of at most max_seq_len - n_query - 3 context tokens start every doc_stride tokens
 *     (the stride is the STEP, as in Google's code; HF's `stride` is the overlap) until one
 *     reaches the end of the context;
 *   - each window is [CLS] question [SEP] window [SEP], type ids 0 up to the first [SEP]
 *     inclusive and 1 after, padded with the pad id and type 0 to max_seq_len;
 *   - a context token's score in a window is min(left, right) + 0.01 x window length; it is
 *     "max context" in the first window where its score is highest;
 *   - training positions (from the FIRST gold answer): the answer's tokens are the context
 *     tokens that overlap its byte span (the char offsets of the tokenizer, as HF does, rather
 *     than Google's whitespace words + _improve_answer_span); in a window that holds them all,
 *     their positions in the sequence; otherwise start = end = 0 ([CLS]), as Google's code does
 *     for v1.1. An answer that overlaps no token (only characters the tokenizer drops) also
 *     gets 0 / 0 in every window.
 *
 * Decoding (petl_squad_decode), per question over all its windows, as Google's
 * write_predictions: the n_best highest start and end logits of each window (over all
 * max_seq_len positions, padding included, ties to the lower position); pairs are dropped when
 * either end is not a context token, the start is not max-context in that window, end < start
 * or the span is longer than max_answer_len tokens; the best pair by start + end logit (ties to
 * the earlier window, then the earlier start and end candidates) gives the answer: the context
 * bytes from its first token's start to its last token's end (HF's offset mapping rather than
 * Google's get_final_text).
 *
 * Scoring: the official evaluate-v1.1.py. normalize = Python str.lower() (full Unicode
 * lowercasing, final sigma included), drop the 32 ASCII punctuation characters of
 * string.punctuation, replace the words a / an / the by ' ' (re's \b(a|an|the)\b on str: word
 * characters are Unicode letters, numbers and '_'), then ' '.join(text.split()) (Python's
 * whitespace: \t-\r, \x1c-\x1f, space, \x85, \xa0, U+1680, U+2000-U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000). EM: normalized strings equal; F1 over the multiset of normalized
 * tokens (0 when nothing is shared); max over the gold answers; totals are 100 x mean.
 */
#ifndef PETL_SQUAD_H
#define PETL_SQUAD_H

#include "petl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== squad (src/squad.c) */

/* The documented split of the dev file: articles [0, 38) train, [38, 48) evaluation. */
#define PETL_SQUAD_DEV_TRAIN_ARTICLES 38

typedef struct {
    int64_t article_begin; /* first article kept (default 0) */
    int64_t article_end;   /* one past the last article kept; -1: to the end (default) */
    bool allow_unanswered; /* keep questions without answers (default false) */
    int64_t max_questions; /* keep only the first N questions of the range (quick runs, as
                              run_qa.py's max_*_samples); 0: all (default) */
} petl_squad_opts;

void petl_squad_opts_default(petl_squad_opts *o);

/* True when s[len] holds nothing but Python whitespace (str.isspace): what the reader calls an
 * empty context or question. */
bool petl_squad_is_blank(const char *s, size_t len);

/* Parses "B:E", "B:" or ":E" (article indices, E exclusive) into opts; "train" and "eval"
 * name the documented split of the dev file (0:38 and 38:); "all" is everything. */
petl_status petl_squad_parse_range(const char *spec, petl_squad_opts *opts, petl_error *err);

typedef struct {
    const char *text; /* NUL-terminated UTF-8, owned by the dataset */
    size_t len;       /* bytes */
    size_t begin;     /* byte offset in the context */
    int64_t start;    /* answer_start as in the file: a code point offset */
} petl_squad_answer;

typedef struct {
    const char *id;       /* owned by the dataset */
    const char *question; /* NUL-terminated */
    size_t question_len;
    size_t context;   /* index of its context (petl_squad_context) */
    size_t article;   /* article index in the file */
    size_t n_answers; /* >= 1 unless allow_unanswered */
    const petl_squad_answer *answers;
} petl_squad_question;

typedef struct {
    const char *text; /* NUL-terminated */
    size_t len;
    size_t article;
} petl_squad_context;

typedef struct petl_squad petl_squad;

/* Reads a SQuAD v1.1 file (opts may be NULL for the defaults). On success *out owns
 * everything; free with petl_squad_free. */
petl_status petl_squad_load(const char *path, const petl_squad_opts *opts, petl_squad **out,
                            petl_error *err);
/* The same from memory (buf is borrowed only during the call). `what` names the source. */
petl_status petl_squad_parse(const char *buf, size_t len, const char *what,
                             const petl_squad_opts *opts, petl_squad **out, petl_error *err);
void petl_squad_free(petl_squad *ds);

size_t petl_squad_num_articles(const petl_squad *ds); /* in the whole file */
size_t petl_squad_count(const petl_squad *ds);        /* questions kept */
const petl_squad_question *petl_squad_at(const petl_squad *ds, size_t i);
size_t petl_squad_num_contexts(const petl_squad *ds); /* contexts of the questions kept */
const petl_squad_context *petl_squad_context_at(const petl_squad *ds, size_t i);
const char *petl_squad_article_title(const petl_squad *ds, size_t article);

typedef struct {
    int max_seq_len;    /* 384 */
    int max_query_len;  /* 64 */
    int doc_stride;     /* 128: the step between window starts */
    int n_best;         /* 20 */
    int max_answer_len; /* 30 tokens */
} petl_squad_params;

void petl_squad_params_default(petl_squad_params *p);

/* All windows of all questions, in question order. Every array is [n, max_seq_len] row-major
 * and owned by the object. */
typedef struct {
    size_t n;          /* windows */
    int max_seq_len;   /* row length */
    int32_t *ids;      /* [n, max_seq_len] padded with the pad id */
    int32_t *type_ids; /* [n, max_seq_len] padded with 0 */
    int *lengths;      /* [n] real tokens */
    size_t *question;  /* [n] question index */
    int *window;       /* [n] window index within its question */
    int *ctx_begin;    /* [n] sequence position of the first context token (n_query + 2) */
    int *ctx_len;      /* [n] context tokens in the window */
    int32_t *offsets;  /* [n, max_seq_len, 2] byte span in the context; -1 / -1 off context */
    uint8_t *max_ctx;  /* [n, max_seq_len] 1 where the token is max-context in this window */
    int *start_pos;    /* [n] training target ([CLS] = 0 when not in the window); -1 when the
                          question has no answer */
    int *end_pos;      /* [n] */
} petl_squad_features;

/* Windows of every question of ds. PETL_ERR_ARG for settings that leave no room for the
 * context (max_seq_len - max_query_len - 3 < 1, doc_stride < 1) or over 512 positions. */
petl_status petl_squad_featurize(const petl_squad *ds, const petl_tokenizer *tok,
                                 const petl_squad_params *p, petl_squad_features **out,
                                 petl_error *err);
void petl_squad_features_free(petl_squad_features *f);

typedef struct {
    const char *text;  /* into the context (not NUL-terminated); "" when no span was valid */
    size_t len;        /* bytes */
    size_t begin, end; /* byte span in the context */
    int64_t char_begin, char_end; /* the same span in code points (Python str indices) */
    double score;                 /* start + end logit; -INFINITY when no span was valid */
    bool found;
} petl_squad_prediction;

/* Decodes start / end logits [f->n, f->max_seq_len] into preds[petl_squad_count(ds)]. */
petl_status petl_squad_decode(const petl_squad *ds, const petl_squad_features *f,
                              const float *start_logits, const float *end_logits,
                              const petl_squad_params *p, petl_squad_prediction *preds,
                              petl_error *err);

/* The official per-answer scores of one prediction against one gold answer (UTF-8 texts; an
 * invalid sequence is treated as U+FFFD). */
petl_status petl_squad_em(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err);
petl_status petl_squad_f1(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err);

/* Scores predictions (texts[i] / lens[i] for question i) against every question of ds: per
 * question (max over its answers) into em[i] / f1[i] when non-NULL (0 / 1 values and F1 in
 * [0, 1]); totals in percent, summed in question order as the official script does. A question
 * without answers is PETL_ERR_ARG (the official script cannot score it either). */
petl_status petl_squad_score(const petl_squad *ds, const char *const *texts, const size_t *lens,
                             double *em, double *f1, double *total_em, double *total_f1,
                             petl_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PETL_SQUAD_H */
