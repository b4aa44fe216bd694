/* Every backward kernel against central finite differences of a DOUBLE-precision reference of
 * its forward, on tiny shapes; and each optimised backward against its naive twin.
 *
 * Method: for a forward y = F(x) and a fixed random R, the scalar L = sum(y * R) has gradient
 * dL/dx = the backward with dout = R. The reference F is written here in double; the inputs are
 * floats (exactly representable in double), so it sees the very same inputs as the float kernel
 * (checked: the float forward matches it to float rounding). Central differences with step
 * 1e-5 in double have truncation error ~1e-10 |F'''| and rounding error ~1e-16 / 1e-5 = 1e-11,
 * far below the float kernels' rounding (~1e-7 relative per operation, a few dozen operations
 * deep): the tolerance is therefore set by float arithmetic, 1e-5 * max(1, max |g|): loose
 * enough for float rounding on these O(1) values (observed: below 2e-7), tight enough that any
 * wrong chain-rule term (an error of O(|g|)) fails by orders of magnitude. The worst ratio is
 * printed per check. */
#include "adapter.h"
#include "check.h"
#include "heads.h"
#include "kernels.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double FD_STEP = 1e-5;
/* worst |fd - g| / max(1, max |g|) over every check: measured 2.1e-7 (float rounding of the
 * analytic gradient; the same in Release and the sanitizer build, on 1 and 2 threads); 4.8x */
static const double TOL = 1e-6;

static uint64_t lcg_state = 42;
static float frand(void) { /* uniform in [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(lcg_state >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}
static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    CHECK(v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}
static float *zeros(size_t n) {
    float *v = calloc(n, sizeof *v);
    CHECK(v);
    return v;
}

/* A reference forward: fills out[] (double) from the float inputs (which FD perturbs through
 * the double copy `x` of the input being differentiated). */
typedef void (*ref_fn)(double *out, void *ctx);

/* L = sum(out * R) in double. */
static double loss_of(ref_fn f, void *ctx, double *out, size_t nout, const float *R) {
    f(out, ctx);
    double L = 0.0;
    for (size_t i = 0; i < nout; i++)
        L += out[i] * R[i];
    return L;
}

/* Compares analytic g[n] with central differences wrt x[n] (x is the double array the reference
 * reads); returns the worst |diff| / max(1, max|g|) and checks it against TOL. */
static void fd_check(const char *what, ref_fn f, void *ctx, double *x, size_t n, const float *g,
                     size_t nout, const float *R) {
    double *out = malloc(nout * sizeof *out);
    CHECK(out);
    double gmax = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(g[i]));
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + FD_STEP;
        double lp = loss_of(f, ctx, out, nout, R);
        x[i] = keep - FD_STEP;
        double lm = loss_of(f, ctx, out, nout, R);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * FD_STEP);
        worst = fmax(worst, fabs(num - g[i]));
    }
    double ratio = worst / fmax(1.0, gmax);
    printf("  %-44s max|g| %.3g  worst |fd - g| %.3g  (ratio %.2g)\n", what, gmax, worst, ratio);
    CHECKF(ratio <= TOL, "%s: finite differences disagree (%.3g)", what, ratio);
    free(out);
}

static double *to_double(const float *v, size_t n) {
    double *d = malloc(n * sizeof *d);
    CHECK(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float d = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float e = fabsf(a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}
/* max |a - b| / max |b|: the distance of a bf16 result from its fp32 counterpart. */
static float rel_diff(const float *a, const float *b, size_t n) {
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++)
        mx = fabsf(b[i]) > mx ? fabsf(b[i]) : mx;
    return max_diff(a, b, n) / (mx > 0.0f ? mx : 1.0f);
}

static float max_diff_d(const float *a, const double *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return (float)d;
}

/* --------------------------------------------------------------------------- matmul */

typedef struct {
    double *x, *w, *b;
    int64_t N;
    int IC, OC;
} mm_ctx;

static void mm_ref(double *out, void *vc) {
    mm_ctx *c = vc;
    for (int64_t i = 0; i < c->N; i++)
        for (int o = 0; o < c->OC; o++) {
            double s = c->b[o];
            for (int k = 0; k < c->IC; k++)
                s += c->x[i * c->IC + k] * c->w[(int64_t)o * c->IC + k];
            out[i * c->OC + o] = s;
        }
}

static void test_matmul(void) {
    printf("petl_matmul_backward\n");
    const int64_t N = 6;
    const int IC = 7, OC = 5;
    float *x = rand_vec(N * IC, 1), *w = rand_vec(OC * IC, 1), *b = rand_vec(OC, 1);
    float *R = rand_vec(N * OC, 1);
    float *dx = rand_vec(N * IC, 1), *dw = zeros(OC * IC), *db = zeros(OC);
    float *dx0 = malloc(N * IC * sizeof *dx0);
    memcpy(dx0, dx, N * IC * sizeof *dx0); /* starts non-zero: the kernel must accumulate */
    petl_matmul_backward(dx, dw, db, R, x, w, N, IC, OC);
    for (int64_t i = 0; i < N * IC; i++)
        dx[i] -= dx0[i];
    mm_ctx c = {to_double(x, N * IC), to_double(w, OC * IC), to_double(b, OC), N, IC, OC};
    fd_check("d inp", mm_ref, &c, c.x, N * IC, dx, N * OC, R);
    fd_check("d weight", mm_ref, &c, c.w, OC * IC, dw, N * OC, R);
    fd_check("d bias", mm_ref, &c, c.b, OC, db, N * OC, R);
    /* the naive twin */
    float *nx = zeros(N * IC), *nw = zeros(OC * IC), *nb = zeros(OC);
    petl_matmul_backward_naive(nx, nw, nb, R, x, w, N, IC, OC);
    float d =
        fmaxf(max_diff(nx, dx, N * IC), fmaxf(max_diff(nw, dw, OC * IC), max_diff(nb, db, OC)));
    printf("  optimised vs naive twin: %.3g\n", d);
    CHECK(d <= 1e-5f);
    /* NULL outputs are skipped */
    petl_matmul_backward(NULL, NULL, NULL, R, x, w, N, IC, OC);
    /* and a larger shape through OpenBLAS, against the twin */
    const int64_t N2 = 70;
    const int IC2 = 33, OC2 = 65;
    float *x2 = rand_vec(N2 * IC2, 1), *w2 = rand_vec(OC2 * IC2, 1), *R2 = rand_vec(N2 * OC2, 1);
    float *a1 = zeros(N2 * IC2), *a2 = zeros(OC2 * IC2), *a3 = zeros(OC2);
    float *b1 = zeros(N2 * IC2), *b2 = zeros(OC2 * IC2), *b3 = zeros(OC2);
    petl_matmul_backward(a1, a2, a3, R2, x2, w2, N2, IC2, OC2);
    petl_matmul_backward_naive(b1, b2, b3, R2, x2, w2, N2, IC2, OC2);
    d = fmaxf(max_diff(a1, b1, N2 * IC2),
              fmaxf(max_diff(a2, b2, OC2 * IC2), max_diff(a3, b3, OC2)));
    printf("  optimised vs naive twin (70 x 33 x 65): %.3g\n", d);
    CHECK(d <= 1e-4f);
    free(x), free(w), free(b), free(R), free(dx), free(dw), free(db), free(dx0);
    free(nx), free(nw), free(nb), free(c.x), free(c.w), free(c.b);
    free(x2), free(w2), free(R2), free(a1), free(a2), free(a3), free(b1), free(b2), free(b3);
}

/* ------------------------------------------------------------------------ layernorm */

typedef struct {
    double *x, *w, *b;
    int64_t N;
    int C;
    double eps;
} ln_ctx;

static void ln_ref(double *out, void *vc) {
    ln_ctx *c = vc;
    for (int64_t i = 0; i < c->N; i++) {
        const double *x = c->x + i * c->C;
        double mu = 0.0, var = 0.0;
        for (int k = 0; k < c->C; k++)
            mu += x[k];
        mu /= c->C;
        for (int k = 0; k < c->C; k++)
            var += (x[k] - mu) * (x[k] - mu);
        double rs = 1.0 / sqrt(var / c->C + c->eps);
        for (int k = 0; k < c->C; k++)
            out[i * c->C + k] = (x[k] - mu) * rs * c->w[k] + c->b[k];
    }
}

static void test_layernorm(void) {
    printf("petl_layernorm_backward\n");
    const int64_t N = 5;
    const int C = 9;
    const float eps = 1e-12f;
    float *x = rand_vec(N * C, 2), *w = rand_vec(C, 1), *b = rand_vec(C, 1),
          *R = rand_vec(N * C, 1);
    float *out = zeros(N * C), *out2 = zeros(N * C), *mean = zeros(N), *rstd = zeros(N);
    petl_layernorm_forward_train(out, mean, rstd, x, w, b, N, C, eps);
    petl_layernorm_forward(out2, x, NULL, w, b, N, C, eps);
    CHECKF(max_diff(out, out2, N * C) == 0.0f, "training and inference LayerNorm differ");
    ln_ctx c = {to_double(x, N * C), to_double(w, C), to_double(b, C), N, C, eps};
    double *ref = malloc(N * C * sizeof *ref);
    ln_ref(ref, &c);
    CHECK(max_diff_d(out, ref, N * C) <= 1e-5f);
    float *dx = zeros(N * C), *dw = zeros(C), *db = zeros(C);
    petl_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C);
    fd_check("d inp", ln_ref, &c, c.x, N * C, dx, N * C, R);
    fd_check("d weight", ln_ref, &c, c.w, C, dw, N * C, R);
    fd_check("d bias", ln_ref, &c, c.b, C, db, N * C, R);
    float *nx = zeros(N * C), *nw = zeros(C), *nb = zeros(C);
    petl_layernorm_backward_naive(nx, nw, nb, R, x, w, mean, rstd, N, C);
    float d = fmaxf(max_diff(nx, dx, N * C), fmaxf(max_diff(nw, dw, C), max_diff(nb, db, C)));
    printf("  optimised vs naive twin: %.3g\n", d);
    CHECK(d <= 1e-5f);
    free(x), free(w), free(b), free(R), free(out), free(out2), free(mean), free(rstd);
    free(c.x), free(c.w), free(c.b), free(ref), free(dx), free(dw), free(db);
    free(nx), free(nw), free(nb);
}

/* ----------------------------------------------------------------------- activations */

typedef struct {
    double *x;
    int64_t n;
    int kind; /* 0..2: petl_act, 3: swish, 4: tanh, 5: dropout (mask: its multipliers) */
    const float *mask;
} act_ctx;

static void act_ref(double *out, void *vc) {
    act_ctx *c = vc;
    for (int64_t i = 0; i < c->n; i++) {
        double x = c->x[i];
        switch (c->kind) {
        case PETL_ACT_GELU: out[i] = 0.5 * x * (1.0 + erf(x / sqrt(2.0))); break;
        case PETL_ACT_GELU_NEW:
            out[i] = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
            break;
        case PETL_ACT_RELU: out[i] = x > 0.0 ? x : 0.0; break;
        case 3: out[i] = x / (1.0 + exp(-x)); break;
        case 4: out[i] = tanh(x); break;
        default: out[i] = x * c->mask[i]; break;
        }
    }
}

static void test_activations(void) {
    printf("petl_activation_backward, swish, tanh, dropout\n");
    const int64_t n = 40;
    float *x = rand_vec(n, 4), *R = rand_vec(n, 1), *y = zeros(n), *mask = zeros(n);
    /* ReLU's kink: keep inputs away from 0, where central differences straddle it */
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 1e-3f) x[i] = 0.5f;
    /* dropout's multipliers (0 or 1 / (1 - p)) from the naive twin, for the reference */
    const float pdrop = 0.3f;
    const uint64_t key = petl_dropout_key(3, PETL_RNG_DROPOUT_HIDDEN, 1, 0);
    for (int64_t i = 0; i < n; i++)
        mask[i] = 1.0f;
    petl_dropout_apply_naive(mask, mask, (size_t)n, pdrop, key, 0);
    int dropped = 0;
    for (int64_t i = 0; i < n; i++)
        dropped += mask[i] == 0.0f;
    CHECK(dropped > 0 && dropped < n);
    const char *names[] = {"gelu (erf)", "gelu_new (tanh)", "relu", "swish", "tanh", "dropout"};
    for (int kind = 0; kind < 6; kind++) {
        float *g = zeros(n), *gn = zeros(n);
        act_ctx c = {to_double(x, n), n, kind, mask};
        double *ref = malloc(n * sizeof *ref);
        act_ref(ref, &c);
        if (kind <= 2) {
            petl_activation_forward(y, x, n, (petl_act)kind);
            petl_activation_backward(g, R, x, n, (petl_act)kind);
            petl_activation_backward_naive(gn, R, x, n, (petl_act)kind);
            float d = max_diff(g, gn, n);
            CHECKF(d <= 1e-5f, "%s: optimised vs naive twin %.3g", names[kind], d);
        } else if (kind == 3) {
            petl_swish_forward(y, x, n);
            petl_swish_backward(g, R, x, n);
        } else if (kind == 4) {
            petl_tanh_forward(y, x, n);
            petl_tanh_backward(g, R, y, n);
        } else {
            /* y = x * mask:  d x = dout * mask, the same call on the gradient */
            petl_dropout_apply(y, x, (size_t)n, pdrop, key, 0);
            petl_dropout_apply(g, R, (size_t)n, pdrop, key, 0);
        }
        CHECKF(max_diff_d(y, ref, n) <= 2e-6f, "%s forward vs double reference", names[kind]);
        fd_check(names[kind], act_ref, &c, c.x, n, g, n, R);
        free(g), free(gn), free(c.x), free(ref);
    }
    free(x), free(R), free(y), free(mask);
}

/* ------------------------------------------------------------------------- attention */

typedef struct {
    double *qkv;
    const float *mask;
    const int64_t *off, *poff;
    const int *qlen, *klen;
    int B, H, nh;
    double *bias; /* [nh, stride] score bias by distance (petl_att_bias), or NULL */
    int stride, center;
} att_ctx;

static void att_ref(double *out, void *vc) {
    att_ctx *c = vc;
    const int hd = c->H / c->nh, ld = 3 * c->H;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->nh; h++) {
            const int nq = c->qlen[b], nk = c->klen[b];
            for (int i = 0; i < nq; i++) {
                const double *q = c->qkv + (c->off[b] + i) * ld + h * hd;
                double p[64], mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < nk; j++) {
                    const double *k = c->qkv + (c->off[b] + j) * ld + c->H + h * hd;
                    double d = 0.0;
                    for (int e = 0; e < hd; e++)
                        d += q[e] * k[e];
                    p[j] = d / sqrt((double)hd);
                    if (c->bias) p[j] += c->bias[h * c->stride + c->center + j - i];
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < nk; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int e = 0; e < hd; e++) {
                    double acc = 0.0;
                    for (int j = 0; j < nk; j++) {
                        double m =
                            c->mask ? c->mask[c->poff[b] + ((int64_t)h * nq + i) * nk + j] : 1.0;
                        acc +=
                            p[j] / sum * m * c->qkv[(c->off[b] + j) * ld + 2 * c->H + h * hd + e];
                    }
                    out[(c->off[b] + i) * c->H + h * hd + e] = acc;
                }
            }
        }
}

static void test_attention(void) {
    printf("petl_attention_backward\n");
    /* Two batch rows; the second has 2 padding query rows (qlen > klen) as in last_hidden. */
    const int B = 2, H = 8, nh = 2;
    const int qlen[2] = {3, 6}, klen[2] = {3, 4};
    const int64_t off[2] = {0, 3}, poff[2] = {0, (int64_t)nh * 3 * 3};
    const int64_t N = 9, np = (int64_t)nh * (3 * 3 + 6 * 4);
    float *qkv = rand_vec(N * 3 * H, 1.5f), *R = rand_vec(N * H, 1);
    /* probability dropout, p = 0.2, one key per batch row; the reference reads the multipliers
     * (0 or 1 / 0.8) in the layout of probs, row b's numbered from poff[b] */
    const float pdrop = 0.2f;
    const uint64_t keys[2] = {petl_dropout_key(8, PETL_RNG_DROPOUT_ATTN, 0, 0),
                              petl_dropout_key(8, PETL_RNG_DROPOUT_ATTN, 0, 1)};
    float *mask = zeros(np);
    for (int64_t i = 0; i < np; i++)
        mask[i] = 1.0f;
    for (int b = 0; b < B; b++)
        petl_dropout_apply_naive(mask + poff[b], mask + poff[b], (size_t)nh * qlen[b] * klen[b],
                                 pdrop, keys[b], 0);
    int dropped = 0;
    for (int64_t i = 0; i < np; i++)
        dropped += mask[i] == 0.0f;
    CHECK(dropped > 0 && dropped < np);
    float *probs = zeros(np), *out = zeros(N * H), *out0 = zeros(N * H);
    const int64_t stride = 2 * 6 * 4;
    float *scratch = zeros(4 * stride);
    /* MPNet's relative position bias: one value per head and distance -5 .. 5 */
    const int bstride = 11, bcenter = 5;
    float *bias = rand_vec(nh * bstride, 1.0f), *dbias = zeros(2 * nh * bstride),
          *dbias_n = zeros(nh * bstride);
    /* variants: plain, probability dropout, dropout and score bias */
    for (int variant = 0; variant < 3; variant++) {
        const bool with_mask = variant > 0;
        const float *mk = with_mask ? mask : NULL;
        const uint64_t *ks = with_mask ? keys : NULL;
        petl_att_bias rb = {bias, NULL, bstride, bcenter};
        const petl_att_bias *rbp = variant == 2 ? &rb : NULL;
        petl_attention_forward_train(out, probs, scratch, stride, 2, pdrop, ks, qkv, off, poff,
                                     qlen, klen, B, H, nh, false, rbp);
        if (!with_mask) {
            petl_attention_forward(out0, scratch, stride, 2, qkv, off, qlen, klen, B, H, nh, false,
                                   NULL);
            CHECKF(max_diff(out, out0, N * H) == 0.0f, "training and inference attention differ");
        }
        if (variant == 2) { /* inference with the bias, optimised and naive, vs training's */
            petl_attention_forward(out0, scratch, stride, 2, qkv, off, qlen, klen, B, H, nh, false,
                                   rbp);
            CHECKF(max_diff(out0, out, N * H) > 0.0f, "dropout made no difference");
            float *on = zeros(N * H);
            petl_attention_naive(on, qkv, off, qlen, klen, B, H, nh, rbp);
            CHECKF(max_diff(out0, on, N * H) <= 1e-6f, "biased attention vs naive twin %.3g",
                   max_diff(out0, on, N * H));
            free(on);
        }
        att_ctx c = {to_double(qkv, N * 3 * H), mk, off, poff, qlen, klen, B, H, nh, NULL, 0, 0};
        if (rbp) c.bias = to_double(bias, nh * bstride), c.stride = bstride, c.center = bcenter;
        double *ref = malloc(N * H * sizeof *ref);
        att_ref(ref, &c);
        CHECK(max_diff_d(out, ref, N * H) <= 1e-5f);
        float *g = zeros(N * 3 * H), *gn = zeros(N * 3 * H);
        memset(dbias, 0, 2 * nh * bstride * sizeof *dbias);
        memset(dbias_n, 0, nh * bstride * sizeof *dbias_n);
        rb.dbias = dbias;
        petl_attention_backward(g, scratch, stride, 2, R, qkv, probs, pdrop, ks, off, poff, qlen,
                                klen, B, H, nh, false, rbp);
        rb.dbias = dbias_n;
        petl_attention_backward_naive(gn, R, qkv, pdrop, ks, off, qlen, klen, B, H, nh, rbp);
        const char *names[] = {"d qkv", "d qkv (probability dropout)", "d qkv (dropout, bias)"};
        fd_check(names[variant], att_ref, &c, c.qkv, N * 3 * H, g, N * H, R);
        float d = max_diff(g, gn, N * 3 * H);
        printf("  optimised vs naive twin: %.3g\n", d);
        CHECK(d <= 1e-5f);
        if (rbp) { /* the per-thread accumulators, summed, vs finite differences and the twin */
            for (int i = 0; i < nh * bstride; i++)
                dbias[i] += dbias[nh * bstride + i];
            fd_check("d bias", att_ref, &c, c.bias, nh * bstride, dbias, N * H, R);
            d = max_diff(dbias, dbias_n, nh * bstride);
            printf("  d bias, optimised vs naive twin: %.3g\n", d);
            CHECK(d <= 1e-5f);
            free(c.bias);
            rb.dbias = NULL;
        }
        /* The products in bf16 (--precision bf16): within bf16 rounding of the fp32 results,
         * and not equal to them (the bf16 path ran). */
        float *ob = zeros(N * H), *pb = zeros(np), *gb = zeros(N * 3 * H);
        petl_attention_forward_train(ob, pb, scratch, stride, 2, pdrop, ks, qkv, off, poff, qlen,
                                     klen, B, H, nh, true, rbp);
        petl_attention_backward(gb, scratch, stride, 2, R, qkv, pb, pdrop, ks, off, poff, qlen,
                                klen, B, H, nh, true, rbp);
        const float eo = rel_diff(ob, out, N * H), eg = rel_diff(gb, g, N * 3 * H);
        printf("  bf16 products vs fp32: out %.3g, d qkv %.3g (of the largest)\n", eo, eg);
        CHECK(eo > 0.0f && eo <= 2e-2f && eg > 0.0f && eg <= 2e-2f);
        free(ob), free(pb), free(gb);
        free(c.qkv), free(ref), free(g), free(gn);
    }
    free(qkv), free(R), free(mask), free(probs), free(out), free(out0), free(scratch);
    free(bias), free(dbias), free(dbias_n);
}

/* --------------------------------------------------------------------------- adapter */

typedef struct {
    double *h, *dw, *db, *uw, *ub;
    int64_t N;
    int d, m;
    petl_adapter_act act;
} ad_ctx;

static void ad_ref(double *out, void *vc) {
    ad_ctx *c = vc;
    for (int64_t i = 0; i < c->N; i++) {
        double g[16];
        for (int j = 0; j < c->m; j++) {
            double z = c->db[j];
            for (int k = 0; k < c->d; k++)
                z += c->dw[j * c->d + k] * c->h[i * c->d + k];
            g[j] = c->act == PETL_ADAPTER_GELU   ? 0.5 * z * (1.0 + erf(z / sqrt(2.0)))
                   : c->act == PETL_ADAPTER_RELU ? (z > 0.0 ? z : 0.0)
                                                 : z / (1.0 + exp(-z));
        }
        for (int k = 0; k < c->d; k++) {
            double u = c->ub[k] + c->h[i * c->d + k];
            for (int j = 0; j < c->m; j++)
                u += c->uw[k * c->m + j] * g[j];
            out[i * c->d + k] = u;
        }
    }
}

static void test_adapter(void) {
    printf("petl_adapter_backward\n");
    const int64_t N = 4;
    const int d = 6, m = 3;
    const char *names[] = {"gelu", "relu", "swish"};
    for (int a = 0; a < 3; a++) {
        float *h = rand_vec(N * d, 1), *dw = rand_vec(m * d, 1), *db = rand_vec(m, 0.5f);
        float *uw = rand_vec(d * m, 1), *ub = rand_vec(d, 1), *R = rand_vec(N * d, 1);
        float *out = zeros(N * d), *z = zeros(N * m), *g = zeros(N * m), *scr = zeros(2 * N * m);
        petl_adapter_weights w = {dw, db, uw, ub};
        petl_adapter_forward(out, z, g, h, &w, N, d, m, (petl_adapter_act)a, false);
        if (a == PETL_ADAPTER_RELU) /* keep z away from ReLU's kink */
            for (int64_t i = 0; i < N * m; i++)
                CHECK(fabsf(z[i]) > 1e-3f);
        ad_ctx c = {to_double(h, N * d),
                    to_double(dw, m * d),
                    to_double(db, m),
                    to_double(uw, d * m),
                    to_double(ub, d),
                    N,
                    d,
                    m,
                    (petl_adapter_act)a};
        double *ref = malloc(N * d * sizeof *ref);
        ad_ref(ref, &c);
        CHECKF(max_diff_d(out, ref, N * d) <= 1e-5f, "adapter forward (%s)", names[a]);
        float *gh = zeros(N * d), *gdw = zeros(m * d), *gdb = zeros(m), *guw = zeros(d * m);
        float *gub = zeros(d);
        petl_adapter_grads gr = {gdw, gdb, guw, gub};
        petl_adapter_backward(gh, &gr, scr, R, h, z, g, &w, N, d, m, (petl_adapter_act)a, false);
        {
            /* bf16 products: within bf16 rounding of fp32, and not equal (the path ran) */
            float *ob = zeros(N * d), *zb = zeros(N * m), *gb = zeros(N * m), *ghb = zeros(N * d);
            float *b1 = zeros(m * d), *b2 = zeros(m), *b3 = zeros(d * m), *b4 = zeros(d);
            petl_adapter_grads grb = {b1, b2, b3, b4};
            petl_adapter_forward(ob, zb, gb, h, &w, N, d, m, (petl_adapter_act)a, true);
            petl_adapter_backward(ghb, &grb, scr, R, h, zb, gb, &w, N, d, m, (petl_adapter_act)a,
                                  true);
            const float e[5] = {rel_diff(ob, out, N * d), rel_diff(ghb, gh, N * d),
                                rel_diff(b1, gdw, m * d), rel_diff(b3, guw, d * m),
                                rel_diff(b2, gdb, m)};
            printf("  %s bf16 vs fp32: out %.3g, d h %.3g, d down %.3g, d up %.3g, d b_down %.3g\n",
                   names[a], e[0], e[1], e[2], e[3], e[4]);
            CHECK(e[0] > 0.0f && e[1] > 0.0f && e[2] > 0.0f && e[3] > 0.0f);
            for (int i = 0; i < 5; i++)
                CHECK(e[i] <= 2e-2f);
            free(ob), free(zb), free(gb), free(ghb), free(b1), free(b2), free(b3), free(b4);
        }
        char what[64];
        snprintf(what, sizeof what, "%s: d h", names[a]);
        fd_check(what, ad_ref, &c, c.h, N * d, gh, N * d, R);
        snprintf(what, sizeof what, "%s: d adapter_down.weight", names[a]);
        fd_check(what, ad_ref, &c, c.dw, m * d, gdw, N * d, R);
        snprintf(what, sizeof what, "%s: d adapter_down.bias", names[a]);
        fd_check(what, ad_ref, &c, c.db, m, gdb, N * d, R);
        snprintf(what, sizeof what, "%s: d adapter_up.weight", names[a]);
        fd_check(what, ad_ref, &c, c.uw, d * m, guw, N * d, R);
        snprintf(what, sizeof what, "%s: d adapter_up.bias", names[a]);
        fd_check(what, ad_ref, &c, c.ub, d, gub, N * d, R);
        free(h), free(dw), free(db), free(uw), free(ub), free(R), free(out), free(z), free(g);
        free(scr), free(c.h), free(c.dw), free(c.db), free(c.uw), free(c.ub), free(ref);
        free(gh), free(gdw), free(gdb), free(guw), free(gub);
    }
}

/* ------------------------------------------------------------------ head and losses */

typedef struct {
    double *cls, *pw, *pb, *cw, *cb;
    const float *mask;
    const int32_t *labels;
    const float *targets;
    int B, H, NL;
    bool pooler;
} head_ctx;

/* out[0] = the loss (R = {1}). */
static void head_ref(double *out, void *vc) {
    head_ctx *c = vc;
    double total = 0.0;
    for (int b = 0; b < c->B; b++) {
        double p[16], l[4] = {0};
        for (int o = 0; o < c->H; o++) {
            double z = c->cls[b * c->H + o];
            if (c->pooler) {
                z = c->pb[o];
                for (int k = 0; k < c->H; k++)
                    z += c->pw[o * c->H + k] * c->cls[b * c->H + k];
                z = tanh(z);
            }
            p[o] = z * c->mask[b * c->H + o];
        }
        for (int j = 0; j < c->NL; j++) {
            l[j] = c->cb[j];
            for (int k = 0; k < c->H; k++)
                l[j] += c->cw[j * c->H + k] * p[k];
        }
        if (c->NL == 1) {
            total += (l[0] - c->targets[b]) * (l[0] - c->targets[b]);
        } else {
            double mx = l[0], s = 0.0;
            for (int j = 1; j < c->NL; j++)
                mx = fmax(mx, l[j]);
            for (int j = 0; j < c->NL; j++)
                s += exp(l[j] - mx);
            total += mx + log(s) - l[c->labels[b]];
        }
    }
    out[0] = total / c->B;
}

static void test_head(void) {
    printf("petl_head_backward, cross-entropy, MSE\n");
    const int B = 3, H = 5;
    const int32_t labels[3] = {2, 0, 1};
    const float targets[3] = {0.5f, -1.0f, 2.0f};
    const float one = 1.0f;
    for (int variant = 0; variant < 3; variant++) {
        const int NL = variant == 2 ? 1 : 3;
        const bool pooler = variant != 1;
        float *cls = rand_vec(B * H, 1), *pw = rand_vec(H * H, 1), *pb = rand_vec(H, 1);
        float *cw = rand_vec(NL * H, 1), *cb = rand_vec(NL, 1), *mask = zeros(B * H);
        /* head dropout p = 0.3, key per row; the reference reads the multipliers */
        const float pdrop = 0.3f;
        uint64_t keys[3];
        int dropped = 0;
        for (int b = 0; b < B; b++) {
            keys[b] = petl_dropout_key(11, PETL_RNG_DROPOUT_HEAD, 0, (uint64_t)b);
            for (int i = 0; i < H; i++)
                mask[b * H + i] = 1.0f;
            petl_dropout_apply_naive(mask + b * H, mask + b * H, (size_t)H, pdrop, keys[b], 0);
            for (int i = 0; i < H; i++)
                dropped += mask[b * H + i] == 0.0f;
        }
        CHECK(dropped > 0 && dropped < B * H);
        float *logits = zeros(B * NL), *pooled = zeros(B * H), *pd = zeros(B * H);
        petl_head_weights w = {pooler ? pw : NULL, pooler ? pb : NULL, cw, cb};
        petl_head_forward(logits, pooled, pd, cls, pdrop, keys, &w, B, H, NL);
        double loss = NL == 1 ? petl_mse_forward(logits, targets, B)
                              : petl_cross_entropy_forward(logits, labels, B, NL);
        head_ctx c = {to_double(cls, B * H),
                      to_double(pw, H * H),
                      to_double(pb, H),
                      to_double(cw, NL * H),
                      to_double(cb, NL),
                      mask,
                      labels,
                      targets,
                      B,
                      H,
                      NL,
                      pooler};
        double ref;
        head_ref(&ref, &c);
        CHECKF(fabs(loss - ref) <= 1e-5 * fmax(1.0, fabs(ref)), "loss %.9g vs %.9g", loss, ref);
        float *dl = zeros(B * NL), *dcls = zeros(B * H), *gpw = zeros(H * H), *gpb = zeros(H);
        float *gcw = zeros(NL * H), *gcb = zeros(NL), *scr = zeros(2 * B * H);
        if (NL == 1)
            petl_mse_backward(dl, logits, targets, B);
        else
            petl_cross_entropy_backward(dl, logits, labels, B, NL);
        petl_head_grads gr = {gpw, gpb, gcw, gcb};
        petl_head_backward(dcls, &gr, scr, dl, cls, pooled, pd, pdrop, keys, &w, B, H, NL);
        const char *v = variant == 0 ? "CE, pooler" : variant == 1 ? "CE, no pooler" : "MSE";
        char what[64];
        snprintf(what, sizeof what, "%s: d cls", v);
        fd_check(what, head_ref, &c, c.cls, B * H, dcls, 1, &one);
        if (pooler) {
            snprintf(what, sizeof what, "%s: d pooler.weight", v);
            fd_check(what, head_ref, &c, c.pw, H * H, gpw, 1, &one);
            snprintf(what, sizeof what, "%s: d pooler.bias", v);
            fd_check(what, head_ref, &c, c.pb, H, gpb, 1, &one);
        }
        snprintf(what, sizeof what, "%s: d classifier.weight", v);
        fd_check(what, head_ref, &c, c.cw, NL * H, gcw, 1, &one);
        snprintf(what, sizeof what, "%s: d classifier.bias", v);
        fd_check(what, head_ref, &c, c.cb, NL, gcb, 1, &one);
        free(cls), free(pw), free(pb), free(cw), free(cb), free(mask), free(logits), free(pooled);
        free(pd), free(c.cls), free(c.pw), free(c.pb), free(c.cw), free(c.cb), free(dl), free(dcls);
        free(gpw), free(gpb), free(gcw), free(gcb), free(scr);
    }
}

/* ------------------------------------------------------------- span head and its loss */

typedef struct {
    double *x, *w, *b;
    const int64_t *off;
    const int *len;
    const int32_t *start, *end;
    int B, H;
} span_ctx;

/* out[0] = the span loss (R = {1}): per row, (CE over its tokens' start logits + the same for
 * the end logits) / 2, mean over the rows. */
static void span_ref(double *out, void *vc) {
    span_ctx *c = vc;
    double total = 0.0;
    for (int r = 0; r < c->B; r++)
        for (int k = 0; k < 2; k++) {
            double l[16], mx = -INFINITY, s = 0.0;
            for (int p = 0; p < c->len[r]; p++) {
                const double *x = c->x + (c->off[r] + p) * c->H;
                l[p] = c->b[k];
                for (int i = 0; i < c->H; i++)
                    l[p] += c->w[k * c->H + i] * x[i];
                mx = fmax(mx, l[p]);
            }
            for (int p = 0; p < c->len[r]; p++)
                s += exp(l[p] - mx);
            total += mx + log(s) - l[k == 0 ? c->start[r] : c->end[r]];
        }
    out[0] = total / (2.0 * c->B);
}

static void test_span_head(void) {
    printf("petl_span_head_backward, span loss\n");
    const int B = 3, H = 6;
    const int len[3] = {5, 1, 7};
    const int64_t off[3] = {0, 5, 6}, n = 13;
    const int32_t start[3] = {3, 0, 2}, end[3] = {4, 0, 6};
    const float one = 1.0f;
    float *x = rand_vec(n * H, 1), *w = rand_vec(2 * H, 1), *b = rand_vec(2, 1);
    float *logits = zeros(n * 2), *dl = zeros(n * 2);
    petl_span_head_forward(logits, x, w, b, n, H);
    double loss = petl_span_loss_forward(logits, off, len, start, end, B);
    span_ctx c = {
        to_double(x, n * H), to_double(w, 2 * H), to_double(b, 2), off, len, start, end, B, H};
    double ref;
    span_ref(&ref, &c);
    CHECKF(fabs(loss - ref) <= 1e-6 * fmax(1.0, fabs(ref)), "loss %.9g vs %.9g", loss, ref);
    petl_span_loss_backward(dl, logits, off, len, start, end, B);
    /* a one-token row has a certain answer: no gradient at all */
    CHECK(dl[2 * 5] == 0.0f && dl[2 * 5 + 1] == 0.0f);
    float *dx = rand_vec(n * H, 1), *dx0 = malloc(n * H * sizeof *dx0);
    float *dw = zeros(2 * H), *db = zeros(2);
    CHECK(dx0);
    memcpy(dx0, dx, n * H * sizeof *dx0); /* starts non-zero: the backward must accumulate */
    petl_span_head_backward(dx, dw, db, dl, x, w, n, H);
    for (int64_t i = 0; i < n * H; i++)
        dx[i] -= dx0[i];
    fd_check("d hidden (every token)", span_ref, &c, c.x, n * H, dx, 1, &one);
    fd_check("d qa_outputs.weight", span_ref, &c, c.w, 2 * H, dw, 1, &one);
    fd_check("d qa_outputs.bias", span_ref, &c, c.b, 2, db, 1, &one);
    /* NULL outputs (frozen / nothing below) are skipped */
    petl_span_head_backward(NULL, NULL, NULL, dl, x, w, n, H);
    free(x), free(w), free(b), free(logits), free(dl), free(dx), free(dx0), free(dw), free(db);
    free(c.x), free(c.w), free(c.b);
}

int main(void) {
    test_matmul();
    test_layernorm();
    test_activations();
    test_attention();
    test_adapter();
    test_head();
    test_span_head();
    CHECK_DONE("test_grad");
}
