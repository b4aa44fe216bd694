/* The encoder's low-level operations, each as an optimised kernel and its naive twin, which the
 * tests compare on random inputs. Internal to the library.
 *
 * Conventions (karpathy/llm.c): outputs first, inputs const, shapes in comments; N is a number
 * of token rows (int64_t), C / IC / OC widths. "Packed" activations hold the computed rows of
 * every batch row back to back: batch row b owns rows off[b] .. off[b] + qlen[b] - 1, of which
 * the first klen[b] are real tokens (keys) and the rest padding (queries only). Every forward
 * writes its output and reads its inputs only, so that backward passes can later sit beside
 * them with the same buffers. */
#ifndef PETL_KERNELS_H
#define PETL_KERNELS_H

#include "petl.h"

#include <stdint.h>

/* out[N, OC] = inp[N, IC] . w[OC, IC]^T + b[OC]   (b may be NULL; out must not alias inp) */
void matmul_forward(float *out, const float *inp, const float *w, const float *b, int64_t N, int IC,
                    int OC);
void matmul_naive(float *out, const float *inp, const float *w, const float *b, int64_t N, int IC,
                  int OC);

/* out[N, C] = LayerNorm(inp + res) * w + b over each row; res may be NULL; out may alias inp
 * or res. */
void layernorm_forward(float *out, const float *inp, const float *res, const float *w,
                       const float *b, int64_t N, int C, float eps);
void layernorm_naive(float *out, const float *inp, const float *res, const float *w, const float *b,
                     int64_t N, int C, float eps);

/* out[n] = act(inp[n]): exact erf GELU, tanh GELU ("gelu_new") or ReLU; out may alias inp. */
void activation_forward(float *out, const float *inp, int64_t n, petl_act act);
void activation_naive(float *out, const float *inp, int64_t n, petl_act act);

/* Multi-head self-attention over packed rows.
 *   out     [N, H]       context, heads concatenated (row off[b] + i, columns h*hd .. +hd)
 *   qkv     [N, 3H]      Q | K | V of every row (from the fused projection)
 *   off     [B]          first packed row of batch row b
 *   qlen    [B]          rows computed for batch row b (queries)
 *   klen    [B]          real tokens of batch row b (keys); klen[b] <= qlen[b]
 * Padded keys get exactly zero weight: they are never read. scratch holds nthreads blocks of
 * scratch_stride >= max qlen * max klen floats, one per OpenMP thread. */
void attention_forward(float *out, float *scratch, int64_t scratch_stride, int nthreads,
                       const float *qkv, const int64_t *off, const int *qlen, const int *klen,
                       int B, int H, int num_heads);
/* The twin masks a full row of qlen keys with -INFINITY instead of skipping padded keys. */
void attention_naive(float *out, const float *qkv, const int64_t *off, const int *qlen,
                     const int *klen, int B, int H, int num_heads);

/* The vectorisable exp / erf used by softmax and GELU (exposed for the tests). */
float petl_expf(float x);
float petl_erff(float x);

#endif
