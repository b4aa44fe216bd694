/* Seedable, splittable pseudo-random numbers with explicit state: internal API used by the
 * trainer (adapter initialisation, shuffling the training set), and the counter-based dropout
 * masks (at the end).
 *
 * Generator: xoshiro256** (Blackman & Vigna), its 256-bit state seeded through splitmix64.
 * The whole state is the plain struct below: copying it (or petl_rng_save / petl_rng_load)
 * captures and restores the stream bit-exactly, which is what --resume relies on.
 *
 * Determinism regardless of thread count: never share one generator between threads, and never
 * let the numbers a piece of work sees depend on the order in which threads reach it. Instead
 * derive an independent stream per unit of work from a key with petl_rng_stream(seed, purpose,
 * a, b), e.g. (seed, PETL_RNG_INIT, layer, site). A parallel loop over units then creates its
 * own generator per unit, and the numbers are the same as in a serial loop whatever the
 * schedule. Dropout needs no generator at all (petl_dropout_apply below). The key is hashed
 * (splitmix64 finaliser over every word), so neighbouring keys give unrelated streams.
 *
 * Every sampler consumes a fixed number of 64-bit draws per output, except the truncated normal
 * (resampling) and petl_rng_below (rejection): the positions in a stream do not depend on the
 * machine. Floating-point results are computed in double and rounded once, with no fused
 * multiply-add in C11 mode, so they do not depend on the vector width either; log/sin/cos come
 * from the C library, so bit-exactness across different libm builds is not promised. */
#ifndef PETL_RNG_H
#define PETL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* xoshiro256** state; never all zero */
} petl_rng;

#define PETL_RNG_STATE_BYTES 32

/* Purposes for petl_rng_stream and petl_dropout_key: distinct constants keep the streams of
 * different uses apart even when their other key words coincide. Add new ones at the end; never
 * renumber (the numbers select the streams a saved run continues with). */
enum {
    PETL_RNG_INIT = 1,           /* parameter initialisation */
    PETL_RNG_SHUFFLE = 2,        /* order of the training examples, per epoch */
    PETL_RNG_DROPOUT_EMBED = 3,  /* dropout after the embedding LayerNorm */
    PETL_RNG_DROPOUT_ATTN = 4,   /* dropout on attention probabilities */
    PETL_RNG_DROPOUT_HIDDEN = 5, /* dropout after the attention / feed-forward projections */
    PETL_RNG_DROPOUT_HEAD = 6,   /* dropout before the classification head */
};

/* Seeds r from one 64-bit seed (any value, 0 included) through splitmix64. */
void petl_rng_seed(petl_rng *r, uint64_t seed);
/* A generator for the stream with key (seed, purpose, a, b): independent of every other key
 * and of any generator's position. Cheap (a few multiplies): create one per unit of work. */
petl_rng petl_rng_stream(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b);
/* A child generator seeded from the next output of r (advances r by one draw). */
petl_rng petl_rng_split(petl_rng *r);

/* Serialises the state as 32 little-endian bytes, and back. petl_rng_load refuses (returns
 * -1, r untouched) an all-zero state, which xoshiro cannot leave; 0 on success. */
void petl_rng_save(const petl_rng *r, uint8_t out[PETL_RNG_STATE_BYTES]);
int petl_rng_load(petl_rng *r, const uint8_t in[PETL_RNG_STATE_BYTES]);

/* Next raw 64 bits. */
uint64_t petl_rng_next(petl_rng *r);
/* Uniform in [0, 1): float from the top 24 bits, double from the top 53 (one draw each). */
float petl_rng_uniform(petl_rng *r);
double petl_rng_uniform_double(petl_rng *r);
/* Uniform integer in [0, n), unbiased (rejection); n == 0 returns 0 without a draw. */
uint64_t petl_rng_below(petl_rng *r, uint64_t n);
/* Standard normal by Box-Muller (two draws per value; petl_rng_fill_normal uses both outputs of
 * each pair, one draw per value). */
double petl_rng_normal(petl_rng *r);

/* out[n] = mean + sd * z, z standard normal. */
void petl_rng_fill_normal(petl_rng *r, float *out, size_t n, float mean, float sd);
/* out[n] from a normal(mean, sd) truncated to [mean - 2 sd, mean + 2 sd] by resampling, as
 * TF's truncated_normal_initializer (the authors' code) and, in distribution,
 * torch.nn.init.trunc_normal_(std=sd, a=mean-2sd, b=mean+2sd). The truncated sd is ~0.880 sd. */
void petl_rng_fill_trunc_normal(petl_rng *r, float *out, size_t n, float mean, float sd);

/* Counter-based dropout: the mask is a pure function of (key, element index), so it is never
 * stored. The forward applies it to the activations and the backward, since y = x * mask gives
 * dx = dy * mask, makes the very same call on the gradient; any part of a tensor can be done in
 * any order, on any thread.
 *
 * Key: petl_dropout_key(seed, purpose, a, row) hashes its four words as petl_rng_stream does
 * (splitmix64's finaliser over each word in turn), e.g. (step seed, PETL_RNG_DROPOUT_HIDDEN,
 * site, batch row): one key per unit of work, independent across purposes, layers and rows.
 *
 * Hash: u = petl_dropout_hash(key, c), 32 bits, for a 64-bit counter c, with k0 / k1 the low /
 * high 32 bits of the key:
 *     u = fmix32(lowbias32((uint32_t)c ^ k0) ^ k1)
 * two multiply-xorshift rounds (lowbias32: x ^= x >> 16, x *= 0x7feb352d, x ^= x >> 15,
 * x *= 0x846ca68b, x ^= x >> 16; MurmurHash3's fmix32: shifts 16, 13, 16, multipliers
 * 0x85ebca6b, 0xc2b2ae35), each a full-avalanche bijection on 32 bits, with one half of the key
 * entering before each round: for a fixed key, c -> u is a bijection on each run of 2^32
 * counters. Counters from 2^32 up (never reached by a tensor here) fold their high word into
 * k1 (times 0x9e3779b9).
 *
 * Mask: element e (= start + i) takes the low 16 bits of u(key, e / 2) when e is even, the high
 * 16 when odd, so that one hash decides two elements (half the work of a hash per element); it
 * is kept iff those bits are >= thr = p 2^16 rounded to nearest, i.e. with probability 1 - p
 * to within 2^-17 (p = 0.1: 0.1000061), and then scaled by 1 / (1 - p) (in float, as torch):
 *     out[i] = in[i] * (keep(start + i) ? 1 / (1 - p) : 0)     for i in [0, n)
 * a multiply by 0 like torch's x * mask (a NaN input stays NaN). p <= 0 or NaN: out = in;
 * p >= 1 or thr = 2^16 (p within 2^-17 of 1): out = in * 0. Plain integer arithmetic: the
 * AVX-512 path (32 elements a step) and the scalar path give the same bits on every machine.
 * out may equal in (in place); other overlaps are not allowed. */
uint64_t petl_dropout_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t row);
uint32_t petl_dropout_hash(uint64_t key, uint64_t c);
void petl_dropout_apply(float *out, const float *in, size_t n, float p, uint64_t key,
                        uint64_t start);
/* Twin: element by element from petl_dropout_hash, for the tests. */
void petl_dropout_apply_naive(float *out, const float *in, size_t n, float p, uint64_t key,
                              uint64_t start);

/* Uniform random permutation of idx[n] in place (Fisher-Yates, n - 1 draws or a few more). */
void petl_rng_shuffle(petl_rng *r, int64_t *idx, size_t n);

#endif
