/* Batches of similar length with dynamic padding: the internal half of the batcher, used by the
 * trainer (the public half, petl_batcher and filling it, is in include/petl.h).
 *
 * Plans say which examples of a petl_batcher go into which batch:
 *
 *   - petl_batcher_plan_train: the epoch's order, a pure function of (seed, epoch, n, batch):
 *     the indices are shuffled with petl_rng_stream(seed, PETL_RNG_SHUFFLE, epoch, 0), cut into
 *     chunks of PETL_BATCHER_CHUNK x batch, each chunk is sorted by length (stable), cut into
 *     batches, and the batch order is shuffled with the same stream. Every example appears
 *     exactly once per epoch; batches are ceil(n / batch) (only the last chunk can end with a
 *     short batch). Sorting inside chunks keeps most of the randomness of a plain shuffle while
 *     cutting the padding (and so the time) of a batch to a few tokens.
 *   - petl_batcher_plan_eval: all examples sorted by length (stable), cut into batches; the
 *     caller maps results back with plan.order (order[k] is the input index of the k-th row).
 *
 * petl_batcher_fill copies a batch into a petl_batch_buf, padded to the longest row of the batch
 * (or to max_len with pad_to_max), with the tokenizer's pad id and type 0. */
#ifndef PETL_BATCHER_H
#define PETL_BATCHER_H

#include "petl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PETL_BATCHER_CHUNK 100 /* batches per length-sorted chunk of a training epoch */

/* Tokens of example i (special tokens included). */
int petl_batcher_length(const petl_batcher *b, size_t i);
int32_t petl_batcher_label(const petl_batcher *b, size_t i);
float petl_batcher_target(const petl_batcher *b, size_t i);
/* Span targets of example i (-1 for examples added by petl_batcher_add). */
int32_t petl_batcher_span_start(const petl_batcher *b, size_t i);
int32_t petl_batcher_span_end(const petl_batcher *b, size_t i);
/* Sum of the lengths of all examples. */
int64_t petl_batcher_total_tokens(const petl_batcher *b);

/* A plan: batches k = 0 .. n_batches-1 hold rows order[start[k] .. start[k+1]). Owned arrays;
 * free with petl_batch_plan_free (a zeroed plan is valid to free). */
typedef struct {
    size_t n_batches;
    size_t *start;  /* [n_batches + 1] */
    int64_t *order; /* [count] example indices */
} petl_batch_plan;

petl_status petl_batcher_plan_train(const petl_batcher *b, int batch, uint64_t seed,
                                    int64_t epoch, petl_batch_plan *plan, petl_error *err);
petl_status petl_batcher_plan_eval(const petl_batcher *b, int batch, petl_batch_plan *plan,
                                   petl_error *err);
void petl_batch_plan_free(petl_batch_plan *plan);

/* Buffers for one batch of up to max_batch rows of up to max_len tokens. */
typedef struct {
    petl_batch batch;        /* points into the arrays below after petl_batcher_fill */
    int32_t *ids, *type_ids; /* [max_batch, max_len] */
    int *lengths;            /* [max_batch] */
    int32_t *labels;         /* [max_batch] */
    float *targets;          /* [max_batch] */
    int32_t *starts, *ends;  /* [max_batch] span targets (petl_batcher_add_encoded) */
    int64_t tokens;          /* real (unpadded) tokens of the batch */
    int max_batch, max_len;
} petl_batch_buf;

petl_status petl_batch_buf_init(petl_batch_buf *buf, int max_batch, int max_len, petl_error *err);
void petl_batch_buf_free(petl_batch_buf *buf);

/* Fills buf with rows idx[0..n) (n <= buf->max_batch): padded to the longest of them, or to the
 * batcher's max_len when pad_to_max. */
petl_status petl_batcher_fill(const petl_batcher *b, const int64_t *idx, size_t n, bool pad_to_max,
                              petl_batch_buf *buf, petl_error *err);

#endif
