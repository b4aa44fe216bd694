/* AdamW (BERT-style or torch-style), gradient-norm clipping and the linear warmup schedule.
 * See optimiser.h for the exact update rules and the determinism and resume guarantees. */
#include "optimiser.h"

#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 16384
/* Blocks per batch of partial sums: bounds the stack array (32 KiB) that keeps the reduction
 * order fixed without an allocation; one parallel region per 4M elements. */
#define NORM_BATCH 4096

struct petl_adamw {
    petl_adamw_opts opts;
    petl_opt_group *groups; /* [n_groups], m / v pointing into moments; owned */
    size_t n_groups;
    size_t total;   /* sum of the groups' n */
    float *moments; /* [2 * total]: m of all groups, then v of all groups; owned */
    int64_t step;   /* completed optimiser steps */
};

void petl_adamw_opts_default(petl_adamw_opts *o) {
    o->lr = 1e-4;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-6;
    o->weight_decay = 0.01;
    o->bias_correction = false;
    o->max_grad_norm = 1.0;
    o->total_steps = 0;
    o->warmup_steps = -1;
}

int64_t petl_warmup_steps(int64_t total_steps, double ratio) {
    if (total_steps <= 0 || !(ratio > 0.0)) return 0;
    return (int64_t)((double)total_steps * ratio);
}

double petl_lr_linear_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total) {
    /* Same operations, in the same order and precision, as transformers'
     * _get_linear_schedule_with_warmup_lr_lambda followed by LambdaLR's base_lr * factor. */
    double f;
    if (step < warmup) {
        f = (double)step / (double)(warmup > 1 ? warmup : 1);
    } else {
        int64_t span = total - warmup;
        f = (double)(total - step) / (double)(span > 1 ? span : 1);
        if (f < 0.0) f = 0.0;
    }
    return base_lr * f;
}

/* Sum of squares of x[n] (n <= PETL_OPT_BLOCK) in double with 8 fixed lanes: vectorisable,
 * and the order of additions depends only on n. */
static double block_sumsq(const float *x, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    for (int k = 0; i < n; i++, k++)
        acc[k] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double petl_grad_norm(const petl_opt_group *groups, size_t n_groups) {
    /* total = sum over groups in order, over blocks in order, of block_sumsq: blocks are
     * computed in parallel into part[], then added serially, so the thread count cannot change
     * the result. */
    double total = 0.0;
    for (size_t g = 0; g < n_groups; g++) {
        const float *x = groups[g].grad;
        size_t n = groups[g].n;
        size_t nb = (n + PETL_OPT_BLOCK - 1) / PETL_OPT_BLOCK;
        for (size_t c0 = 0; c0 < nb; c0 += NORM_BATCH) {
            double part[NORM_BATCH];
            long cnt = (long)(nb - c0 < NORM_BATCH ? nb - c0 : NORM_BATCH);
#pragma omp parallel for schedule(static) if (cnt >= 16)
            for (long b = 0; b < cnt; b++) {
                size_t start = (c0 + (size_t)b) * PETL_OPT_BLOCK;
                size_t len = n - start < PETL_OPT_BLOCK ? n - start : PETL_OPT_BLOCK;
                part[b] = block_sumsq(x + start, len);
            }
            for (long b = 0; b < cnt; b++)
                total += part[b];
        }
    }
    return sqrt(total);
}

static void scale_array(float *restrict x, size_t n, float c) {
    long nl = (long)n;
#pragma omp parallel for schedule(static) if (nl >= PAR_MIN)
    for (long i = 0; i < nl; i++)
        x[i] *= c;
}

double petl_clip_grad_norm(petl_opt_group *groups, size_t n_groups, double max_norm) {
    double norm = petl_grad_norm(groups, n_groups);
    if (!isfinite(norm) || !(max_norm > 0.0)) return norm;
    /* In float32, as torch computes it from its float32 norm tensor: when the two norms round
     * to the same float, the clipped gradients are bitwise torch's. */
    float c = (float)max_norm / ((float)norm + 1e-6f);
    if (c < 1.0f)
        for (size_t g = 0; g < n_groups; g++)
            scale_array(groups[g].grad, groups[g].n, c);
    return norm;
}

petl_status petl_adamw_new(const petl_opt_group *groups, size_t n_groups,
                           const petl_adamw_opts *opts, petl_adamw **out, petl_error *err) {
    *out = NULL;
    if (!opts || (n_groups > 0 && !groups))
        return petl_fail(err, PETL_ERR_ARG, "optimiser: no options or groups given");
    if (opts->total_steps <= 0)
        return petl_fail(err, PETL_ERR_ARG, "optimiser: total_steps must be positive, got %lld",
                         (long long)opts->total_steps);
    if (!(opts->lr >= 0.0) || !isfinite(opts->lr))
        return petl_fail(err, PETL_ERR_ARG,
                         "optimiser: learning rate %g is not a finite "
                         "non-negative number",
                         opts->lr);
    if (!(opts->beta1 >= 0.0 && opts->beta1 < 1.0) || !(opts->beta2 >= 0.0 && opts->beta2 < 1.0))
        return petl_fail(err, PETL_ERR_ARG, "optimiser: betas (%g, %g) must lie in [0, 1)",
                         opts->beta1, opts->beta2);
    if (!(opts->eps > 0.0) || !(opts->weight_decay >= 0.0) || !isfinite(opts->weight_decay))
        return petl_fail(err, PETL_ERR_ARG,
                         "optimiser: eps %g must be positive and weight "
                         "decay %g finite and non-negative",
                         opts->eps, opts->weight_decay);
    size_t total = 0;
    for (size_t g = 0; g < n_groups; g++) {
        if (groups[g].n > 0 && (!groups[g].param || !groups[g].grad))
            return petl_fail(err, PETL_ERR_ARG, "optimiser: group %zu has no param or grad", g);
        if (groups[g].n > (SIZE_MAX / 2 / sizeof(float)) - total)
            return petl_fail(err, PETL_ERR_ARG, "optimiser: parameter count overflows");
        total += groups[g].n;
    }
    petl_adamw *o = calloc(1, sizeof *o);
    petl_opt_group *gs = calloc(n_groups ? n_groups : 1, sizeof *gs);
    float *mom = calloc(total ? 2 * total : 1, sizeof *mom);
    if (!o || !gs || !mom) {
        free(o);
        free(gs);
        free(mom);
        return petl_fail(err, PETL_ERR_NOMEM, "optimiser: out of memory for %zu parameters", total);
    }
    o->opts = *opts;
    if (o->opts.warmup_steps < 0) o->opts.warmup_steps = petl_warmup_steps(opts->total_steps, 0.1);
    size_t off = 0;
    for (size_t g = 0; g < n_groups; g++) {
        gs[g] = groups[g];
        gs[g].m = mom + off;
        gs[g].v = mom + total + off;
        off += groups[g].n;
    }
    o->groups = gs;
    o->n_groups = n_groups;
    o->total = total;
    o->moments = mom;
    *out = o;
    return PETL_OK;
}

void petl_adamw_free(petl_adamw *opt) {
    if (!opt) return;
    free(opt->groups);
    free(opt->moments);
    free(opt);
}

double petl_adamw_clip(petl_adamw *opt) {
    return petl_clip_grad_norm(opt->groups, opt->n_groups, opt->opts.max_grad_norm);
}

double petl_adamw_lr(const petl_adamw *opt) {
    return petl_lr_linear_warmup(opt->opts.lr, opt->step, opt->opts.warmup_steps,
                                 opt->opts.total_steps);
}

/* The scalars of one update, formed once per step. */
typedef struct {
    bool bert;      /* BERT-style rule, else torch's */
    float lr, wd;   /* BERT: learning rate and decay rate */
    float b1, omb1; /* beta1, 1 - beta1 */
    float b2, omb2; /* beta2, 1 - beta2 */
    float eps;
    float decay_mul;     /* torch: 1 - lr wd */
    float bc2_sqrt;      /* torch: sqrt(1 - beta2^t) */
    float neg_step_size; /* torch: -lr / (1 - beta1^t) */
} step_consts;

/* Elements per OpenMP work item: the update of x[i] depends on x[i] only, so any split gives
 * the same bits.
 * The update loops stay scalar with GCC: sqrtf may set errno (C11 math_errhandling), which
 * blocks vectorisation unless the whole build uses -fno-math-errno, and neither
 * __attribute__((optimize)) nor #pragma GCC optimize lifts it per function (tried, GCC 12).
 * They compile to inline sqrtss with a never-taken branch: a few ms per step for BERT-base
 * sized adapters, small beside the forward and backward passes. */
#define STEP_CHUNK 8192

/* BERT's AdamWeightDecayOptimizer on p, g, m, v [n], every operation in float32 as TF does it
 * (the Python constants 1 - beta are formed in double and then converted, as TF converts
 * them). */
static void step_bert(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, bool decay, const step_consts *k) {
    const float lr = k->lr, wd = decay ? k->wd : 0.0f, b1 = k->b1, omb1 = k->omb1, b2 = k->b2,
                omb2 = k->omb2, eps = k->eps;
    if (decay) {
        for (size_t i = 0; i < n; i++) {
            float mi = b1 * m[i] + omb1 * g[i];
            float vi = b2 * v[i] + omb2 * (g[i] * g[i]);
            float u = mi / (sqrtf(vi) + eps) + wd * p[i];
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] - lr * u;
        }
    } else {
        /* No "+ 0 * p": it would turn an infinite p into NaN where TF leaves it alone. */
        for (size_t i = 0; i < n; i++) {
            float mi = b1 * m[i] + omb1 * g[i];
            float vi = b2 * v[i] + omb2 * (g[i] * g[i]);
            float u = mi / (sqrtf(vi) + eps);
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] - lr * u;
        }
    }
}

/* torch.optim.AdamW's single-tensor CPU path on p, g, m, v [n]: scalars formed in double as
 * the Python code does, then applied in float32 (torch casts a Python scalar to the tensor's
 * type), in torch's order: decay, lerp of m, v, then p += (-step_size * m) / denom. */
static void step_torch(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, size_t n, bool decay, const step_consts *k) {
    const float decay_mul = decay ? k->decay_mul : 1.0f, omb1 = k->omb1, b2 = k->b2, omb2 = k->omb2,
                bc2_sqrt = k->bc2_sqrt, eps = k->eps, nss = k->neg_step_size;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay_mul; /* times 1.0f (exact) without decay */
        /* lerp(m, g, w) with w = 1 - beta1 < 0.5 is m + w * (g - m); torch's CPU kernels
         * compute it, and addcmul, with one fused multiply-add: so do we, and m and v then
         * match torch's bit for bit (measured on torch 2.15, AVX-512). */
        float mi = fmaf(omb1, g[i] - m[i], m[i]);
        float vi = fmaf(omb2 * g[i], g[i], v[i] * b2);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + nss * mi / denom;
    }
}

static void step_group(const petl_opt_group *gr, const step_consts *k) {
    size_t n = gr->n;
    long nc = (long)((n + STEP_CHUNK - 1) / STEP_CHUNK);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long c = 0; c < nc; c++) {
        size_t s = (size_t)c * STEP_CHUNK;
        size_t len = n - s < STEP_CHUNK ? n - s : STEP_CHUNK;
        if (k->bert)
            step_bert(gr->param + s, gr->grad + s, gr->m + s, gr->v + s, len, gr->decay, k);
        else
            step_torch(gr->param + s, gr->grad + s, gr->m + s, gr->v + s, len, gr->decay, k);
    }
}

double petl_adamw_step(petl_adamw *opt) {
    const petl_adamw_opts *o = &opt->opts;
    double lr = petl_adamw_lr(opt);
    int64_t t = opt->step + 1; /* torch's step count after its increment */
    step_consts k = {
        .bert = !o->bias_correction,
        .lr = (float)lr,
        .wd = (float)o->weight_decay,
        .b1 = (float)o->beta1,
        .omb1 = (float)(1.0 - o->beta1),
        .b2 = (float)o->beta2,
        .omb2 = (float)(1.0 - o->beta2),
        .eps = (float)o->eps,
        .decay_mul = (float)(1.0 - lr * o->weight_decay),
        .bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, (double)t)),
        .neg_step_size = (float)(-(lr / (1.0 - pow(o->beta1, (double)t)))),
    };
    for (size_t g = 0; g < opt->n_groups; g++)
        if (opt->groups[g].n > 0) step_group(&opt->groups[g], &k);
    opt->step = t;
    return lr;
}

int64_t petl_adamw_step_count(const petl_adamw *opt) {
    return opt->step;
}

void petl_adamw_set_step_count(petl_adamw *opt, int64_t step) {
    opt->step = step < 0 ? 0 : step;
}

petl_opt_group *petl_adamw_groups(petl_adamw *opt, size_t *n_groups) {
    *n_groups = opt->n_groups;
    return opt->groups;
}

const petl_adamw_opts *petl_adamw_get_opts(const petl_adamw *opt) {
    return &opt->opts;
}

/* ------------------------------------------------------------------------ serialised state */

static const char STATE_MAGIC[8] = {'P', 'E', 'T', 'L', 'A', 'D', 'A', 'M'};
#define STATE_VERSION 1u

size_t petl_adamw_state_size(const petl_adamw *opt) {
    return 8 + 4 + 4 + 8 + 8 + 8 * opt->n_groups + 2 * sizeof(float) * opt->total;
}

static uint8_t *put_u64(uint8_t *p, uint64_t x) {
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(x >> (8 * k));
    return p + 8;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t x = 0;
    for (int k = 0; k < 8; k++)
        x |= (uint64_t)p[k] << (8 * k);
    return x;
}

/* Float arrays as little-endian bit patterns, whatever the host's byte order. */
static uint8_t *put_f32s(uint8_t *p, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int k = 0; k < 4; k++)
            *p++ = (uint8_t)(u >> (8 * k));
    }
    return p;
}

static const uint8_t *get_f32s(const uint8_t *p, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&x[i], &u, 4);
        p += 4;
    }
    return p;
}

petl_status petl_adamw_save_state(const petl_adamw *opt, void *buf, size_t cap, petl_error *err) {
    size_t need = petl_adamw_state_size(opt);
    if (cap < need)
        return petl_fail(err, PETL_ERR_ARG, "optimiser state: buffer of %zu bytes, need %zu", cap,
                         need);
    uint8_t *p = buf;
    memcpy(p, STATE_MAGIC, 8);
    p += 8;
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(STATE_VERSION >> (8 * k));
    memset(p + 4, 0, 4);
    p += 8;
    p = put_u64(p, (uint64_t)opt->step);
    p = put_u64(p, (uint64_t)opt->n_groups);
    for (size_t g = 0; g < opt->n_groups; g++)
        p = put_u64(p, (uint64_t)opt->groups[g].n);
    for (size_t g = 0; g < opt->n_groups; g++) {
        p = put_f32s(p, opt->groups[g].m, opt->groups[g].n);
        p = put_f32s(p, opt->groups[g].v, opt->groups[g].n);
    }
    return PETL_OK;
}

petl_status petl_adamw_load_state(petl_adamw *opt, const void *buf, size_t len, const char *what,
                                  petl_error *err) {
    const uint8_t *p = buf;
    if (!what) what = "optimiser state";
    if (len < 32 || memcmp(p, STATE_MAGIC, 8) != 0)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: not a petl optimiser state", what);
    uint32_t version =
        (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
    if (version != STATE_VERSION)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: optimiser state version %u, expected %u", what,
                         version, STATE_VERSION);
    uint64_t step = get_u64(p + 16);
    uint64_t ng = get_u64(p + 24);
    if (step > (uint64_t)INT64_MAX)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: step count %llu out of range", what,
                         (unsigned long long)step);
    if (ng != opt->n_groups)
        return petl_fail(err, PETL_ERR_SHAPE, "%s: %llu parameter groups, the model has %zu", what,
                         (unsigned long long)ng, opt->n_groups);
    if (len != petl_adamw_state_size(opt) || (len - 32) / 8 < ng)
        return petl_fail(err, PETL_ERR_SHAPE, "%s: %zu bytes, expected %zu", what, len,
                         petl_adamw_state_size(opt));
    for (size_t g = 0; g < opt->n_groups; g++) {
        uint64_t n = get_u64(p + 32 + 8 * g);
        if (n != opt->groups[g].n)
            return petl_fail(err, PETL_ERR_SHAPE, "%s: group %zu has %llu elements, expected %zu",
                             what, g, (unsigned long long)n, opt->groups[g].n);
    }
    /* Everything checked: only now overwrite the state. */
    p += 32 + 8 * opt->n_groups;
    for (size_t g = 0; g < opt->n_groups; g++) {
        p = get_f32s(p, opt->groups[g].m, opt->groups[g].n);
        p = get_f32s(p, opt->groups[g].v, opt->groups[g].n);
    }
    opt->step = (int64_t)step;
    return PETL_OK;
}
