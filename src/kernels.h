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

#include <stdbool.h>
#include <stdint.h>

/* out[N, OC] = inp[N, IC] . w[OC, IC]^T + b[OC]   (b may be NULL; out must not alias inp) */
void petl_matmul_forward(float *out, const float *inp, const float *w, const float *b, int64_t N,
                         int IC, int OC);
void petl_matmul_naive(float *out, const float *inp, const float *w, const float *b, int64_t N,
                       int IC, int OC);
/* Backward of petl_matmul_forward, accumulating (+=); each output may be NULL (not wanted: a frozen
 * weight gets no weight-gradient GEMM, and nothing below the lowest trained parameter needs
 * dinp):
 *   dinp[N, IC] += dout[N, OC] . w[OC, IC]      dweight[OC, IC] += dout^T . inp[N, IC]
 *   dbias[OC]   += sum over rows of dout
 * dbias is summed row by row in a fixed order, so it does not depend on the thread count. */
void petl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *w, int64_t N, int IC, int OC);
void petl_matmul_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *w, int64_t N, int IC, int OC);

/* bf16 linear layers (src/gemm_bf16.c, --precision bf16): a matrix B[N, K] packed once as bf16
 * (round to nearest even) in the kernel's panel layout; C = A . B^T with A rounded to bf16 and
 * fp32 accumulation. */
typedef struct {
    int N, K;
    uint32_t *data; /* [ceil(N/32), ceil(K/2), 32] bf16 pairs; owned (petl_bf16_free) */
} petl_bf16_mat;
/* Packs B[n][k] = src[n * rs + k * cs]: (rs, cs) = (K, 1) for a Linear weight [out = N, in = K]
 * (the forward), (1, N_w) for its transpose (input gradients: N = in, K = out = N_w). */
petl_status petl_bf16_pack(petl_bf16_mat *out, const float *src, int N, int K, int64_t rs,
                           int64_t cs, petl_error *err);
void petl_bf16_free(petl_bf16_mat *m); /* NULL data: no-op */
uint16_t petl_bf16_round(float f);
float petl_bf16_to_f32(uint16_t h);
/* c[M, N] (=, or += when accumulate) a[M, K] . B^T + bias[N] (bias may be NULL); c must not
 * alias a. Without AVX512-BF16 at build time this is the naive twin. */
void petl_matmul_bf16(float *c, const float *a, const petl_bf16_mat *b, const float *bias,
                      int64_t M, bool accumulate);
void petl_matmul_bf16_naive(float *c, const float *a, const petl_bf16_mat *b, const float *bias,
                            int64_t M, bool accumulate);
/* Autocast-style GEMM of two fp32 operands that change every call (attention, adapters):
 *   C[i][j] = beta C[i][j] + alpha sum_k bf16(A[i a_rs + k a_cs]) bf16(B[k b_rs + j b_cs])
 *             (+ bias[j] when bias is non-NULL)
 * for i < M, j < N, k < K: A is [M, K] and B [K, N] given by strides, so a transposed operand is
 * just swapped strides; bf16() rounds to nearest even (petl_bf16_round), the sums are fp32.
 * beta 0: C is not read (may hold NaN). C (row stride ldc) must not alias A, B or bias. Unit
 * strides (a_cs or a_rs, b_cs or b_rs equal to 1) are the fast paths. Outside any OpenMP parallel
 * region a large product spreads over the threads; inside one it runs on the calling thread.
 * The result does not depend on the thread count or on which operands are transposed. Without
 * AVX512-BF16 at build time this is the naive twin, which sums in double. */
void petl_gemm_bf16(int M, int N, int K, float alpha, const float *A, int64_t a_rs, int64_t a_cs,
                    const float *B, int64_t b_rs, int64_t b_cs, float beta, float *C, int64_t ldc,
                    const float *bias);
void petl_gemm_bf16_naive(int M, int N, int K, float alpha, const float *A, int64_t a_rs,
                          int64_t a_cs, const float *B, int64_t b_rs, int64_t b_cs, float beta,
                          float *C, int64_t ldc, const float *bias);
/* petl_matmul_forward / petl_matmul_backward with every product through petl_gemm_bf16 (--precision
 * bf16 for the weights a task trains: adapters): same arguments and accumulation rules; the bias
 * gradient stays an fp32 sum. */
void petl_matmul_forward_bf16(float *out, const float *inp, const float *w, const float *b,
                              int64_t N, int IC, int OC);
void petl_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *w, int64_t N, int IC, int OC);

/* out[N, C] = LayerNorm(inp + res) * w + b over each row; res may be NULL; out may alias inp
 * or res. */
void petl_layernorm_forward(float *out, const float *inp, const float *res, const float *w,
                            const float *b, int64_t N, int C, float eps);
void petl_layernorm_naive(float *out, const float *inp, const float *res, const float *w,
                          const float *b, int64_t N, int C, float eps);
/* Training variant: out[N, C] = LayerNorm(inp) * w + b, and saves mean[N], rstd[N] for the
 * backward pass (the caller keeps inp). out must not alias inp. Same arithmetic as
 * petl_layernorm_forward (double accumulators), so a training forward matches inference. */
void petl_layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int64_t N, int C, float eps);
/* Backward, accumulating: dinp[N, C] +=, dweight[C] +=, dbias[C] += (each may be NULL), from
 * dout[N, C], the forward's inp[N, C], w[C], mean[N], rstd[N]. */
void petl_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *w, const float *mean, const float *rstd,
                             int64_t N, int C);
void petl_layernorm_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int64_t N, int C);

/* out[n] = act(inp[n]): exact erf GELU, tanh GELU ("gelu_new") or ReLU; out may alias inp. */
void petl_activation_forward(float *out, const float *inp, int64_t n, petl_act act);
void petl_activation_naive(float *out, const float *inp, int64_t n, petl_act act);
/* dinp[n] += act'(inp[n]) * dout[n] (inp: the forward's input). */
void petl_activation_backward(float *dinp, const float *dout, const float *inp, int64_t n,
                              petl_act act);
void petl_activation_backward_naive(float *dinp, const float *dout, const float *inp, int64_t n,
                                    petl_act act);
/* Swish / SiLU, x * sigmoid(x) (the AdapterHub default; not a BERT hidden_act, so apart from
 * petl_act): out may alias inp; the backward accumulates into dinp. */
void petl_swish_forward(float *out, const float *inp, int64_t n);
void petl_swish_backward(float *dinp, const float *dout, const float *inp, int64_t n);

/* The pooler's tanh: out[n] = tanh(inp[n]) (may alias); dinp[n] += (1 - out^2) * dout, from the
 * forward's OUTPUT. */
void petl_tanh_forward(float *out, const float *inp, int64_t n);
void petl_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n);

/* An additive bias of the attention scores that depends only on the head and the distance
 * j - i of key j from query i (MPNet's relative position bias):
 *   score(h, i, j) = scale q_i . k_j + bias[h * stride + center + j - i]
 * dbias (backward; NULL: frozen): nthreads accumulators of [num_heads, stride] floats, one per
 * OpenMP thread, added to (the caller zeroes and sums them). */
typedef struct {
    const float *bias; /* [num_heads, stride] */
    float *dbias;      /* [nthreads, num_heads, stride] or NULL */
    int stride, center;
} petl_att_bias;

/* Multi-head self-attention over packed rows.
 *   out     [N, H]       context, heads concatenated (row off[b] + i, columns h*hd .. +hd)
 *   qkv     [N, 3H]      Q | K | V of every row (from the fused projection)
 *   off     [B]          first packed row of batch row b
 *   qlen    [B]          rows computed for batch row b (queries)
 *   klen    [B]          real tokens of batch row b (keys); klen[b] <= qlen[b]
 *   rb      the score bias, or NULL
 * Padded keys get exactly zero weight: they are never read. scratch holds nthreads blocks of
 * scratch_stride >= max qlen * max klen floats, one per OpenMP thread. bf16: the two products
 * (and the backward's four) through petl_gemm_bf16 instead of sgemm (--precision bf16); the
 * softmax and everything else stay fp32. */
void petl_attention_forward(float *out, float *scratch, int64_t scratch_stride, int nthreads,
                            const float *qkv, const int64_t *off, const int *qlen, const int *klen,
                            int B, int H, int num_heads, bool bf16, const petl_att_bias *rb);
/* The twin masks a full row of qlen keys with -INFINITY instead of skipping padded keys. */
void petl_attention_naive(float *out, const float *qkv, const int64_t *off, const int *qlen,
                          const int *klen, int B, int H, int num_heads, const petl_att_bias *rb);

/* Training variant of petl_attention_forward: also saves the softmax probabilities (before
 * dropout) for the backward pass, and applies attention-probability dropout.
 *   probs   [sum_b num_heads * qlen[b] * klen[b]]  block (b, h) at poff[b] + h * qlen * klen,
 *           row-major [qlen[b], klen[b]]: written
 *   p       drop probability; keys [B] one dropout key per batch row (petl_dropout_key).
 *           Block (b, h) is dropped by petl_dropout_apply with key keys[b] and start
 *           h * qlen[b] * klen[b], i.e. the elements of batch row b are numbered as in probs.
 *           keys NULL or p <= 0: no dropout
 *   scratch nthreads blocks of scratch_stride >= max qlen * max klen floats (only with dropout)
 * Other arguments as petl_attention_forward. Padded keys never enter. */
void petl_attention_forward_train(float *out, float *probs, float *scratch, int64_t scratch_stride,
                                  int nthreads, float p, const uint64_t *keys, const float *qkv,
                                  const int64_t *off, const int64_t *poff, const int *qlen,
                                  const int *klen, int B, int H, int num_heads, bool bf16,
                                  const petl_att_bias *rb);
/* Backward, accumulating dqkv[N, 3H] += from dout[N, H] (gradient of the context), the
 * forward's qkv and probs, and its dropout (p, keys: the same arguments, the mask is
 * regenerated); and rb->dbias when set. scratch: nthreads blocks of scratch_stride >= 2 * max
 * qlen * max klen floats. */
void petl_attention_backward(float *dqkv, float *scratch, int64_t scratch_stride, int nthreads,
                             const float *dout, const float *qkv, const float *probs, float p,
                             const uint64_t *keys, const int64_t *off, const int64_t *poff,
                             const int *qlen, const int *klen, int B, int H, int num_heads,
                             bool bf16, const petl_att_bias *rb);
/* Twin: plain loops in double, probabilities recomputed from qkv, the dropout multiplier of
 * each probability from petl_dropout_apply_naive; rb->dbias: its first accumulator. */
void petl_attention_backward_naive(float *dqkv, const float *dout, const float *qkv, float p,
                                   const uint64_t *keys, const int64_t *off, const int *qlen,
                                   const int *klen, int B, int H, int num_heads,
                                   const petl_att_bias *rb);

/* The vectorisable exp / erf used by softmax and GELU (exposed for the tests). */
float petl_expf(float x);
float petl_erff(float x);

#endif
