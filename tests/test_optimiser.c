/* The optimiser against the references, and its determinism and resume guarantees.
 *
 * tests/golden/optimiser_cases.txt, written by scripts/reference/gen-optimiser-golden.py, holds
 * 20-step trajectories of torch.optim.AdamW and of BERT's AdamWeightDecayOptimizer (both with
 * clip_grad_norm_(1.0) and transformers' linear warmup schedule) on three parameter groups, one
 * without weight decay, and learning-rate schedules for several (warmup, total) pairs.
 * Checked: fed torch's clipped gradients, every parameter after every step within REL_TOL
 * relative (of max(|p|, 1e-2)), and bit for bit for the BERT rule; clipping by itself, within
 * CLIP_TOL (see there); the pre-clip norm within NORM_TOL relative; the learning rates exactly.
 * Each bound is a small multiple of the error measured (the same in Release and the sanitizer
 * build, on 1 and 2 threads), said next to it.
 * Then save / restore mid-run and the thread count change nothing, bit for bit, and malformed
 * states are refused. */
#include "check.h"
#include "optimiser.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>

/* Fed torch's clipped gradients, the update rule alone: measured 1.19e-7 (one float ulp); 5x. */
#ifndef REL_TOL
#define REL_TOL 6e-7
#endif
/* The pre-clip gradient norm, ours in double vs torch's float32: measured 8.4e-8; 6x. */
#define NORM_TOL 5e-7
/* Relative to max(|p|, REL_FLOOR): parameters that pass near zero during the run would
 * otherwise turn a float32 rounding of the update (~1e-8 absolute) into a large ratio. */
#define REL_FLOOR 1e-2
/* The run that clips by itself: our norm (double) and torch's (float32) round to different
 * floats on some steps, so the clip coefficient, and from then on the gradients, differ by one
 * float ulp; Adam's normalisation carries that into the parameters as ~1e-7 absolute
 * (measured: up to 5.2e-6 relative to max(|p|, 1e-2), 2.4e-7 absolute; 3.9x). */
#ifndef CLIP_TOL
#define CLIP_TOL 2e-5
#endif
#define MAX_GROUPS 8

static void read_floats(FILE *f, const char *tag, float *out, size_t n) {
    char word[32];
    CHECK(fscanf(f, "%31s", word) == 1);
    CHECKF(strcmp(word, tag) == 0, "expected '%s', found '%s'", tag, word);
    for (size_t i = 0; i < n; i++)
        CHECK(fscanf(f, "%f", &out[i]) == 1);
}

typedef struct {
    size_t n_groups;
    size_t sizes[MAX_GROUPS];
    bool decay[MAX_GROUPS];
    size_t total;
} layout;

/* Points groups[] at consecutive slices of param / grad [total]. */
static void make_groups(const layout *L, float *param, float *grad, petl_opt_group *groups) {
    size_t off = 0;
    for (size_t g = 0; g < L->n_groups; g++) {
        groups[g] = (petl_opt_group){
            .param = param + off, .grad = grad + off, .n = L->sizes[g], .decay = L->decay[g]};
        off += L->sizes[g];
    }
}

static double max_param_diff; /* worst relative difference over all golden cases */
static double max_norm_diff;

typedef struct {
    double rel, abs; /* worst differences */
    size_t n_differ; /* values, over all steps, not bitwise equal */
} diff_stats;

static void compare(const char *name, const char *run, long long k, const float *got,
                    const float *want, size_t n, double tol, diff_stats *st) {
    for (size_t i = 0; i < n; i++) {
        double scale = fabs(want[i]) > REL_FLOOR ? fabs(want[i]) : REL_FLOOR;
        double ad = fabs((double)got[i] - (double)want[i]), d = ad / scale;
        if (d > st->rel) st->rel = d;
        if (ad > st->abs) st->abs = ad;
        if (got[i] != want[i]) st->n_differ++;
        CHECKF(d <= tol, "%s (%s) step %lld param %zu: %.9g, reference %.9g (rel %.3g)", name, run,
               k, i, got[i], want[i], d);
    }
}

static petl_adamw *new_case_opt(const layout *L, float *param, float *grad, const char *mode,
                                double lr, double wd, long long warmup, long long total) {
    petl_opt_group groups[MAX_GROUPS];
    make_groups(L, param, grad, groups);
    petl_adamw_opts o;
    petl_adamw_opts_default(&o);
    o.lr = lr;
    o.weight_decay = wd;
    o.warmup_steps = warmup;
    o.total_steps = total;
    o.bias_correction = strcmp(mode, "torch") == 0;
    CHECK(o.bias_correction || strcmp(mode, "bert") == 0);
    petl_adamw *opt;
    petl_error err;
    CHECK_OK(petl_adamw_new(groups, L->n_groups, &o, &opt, &err), &err);
    return opt;
}

/* Two runs per case: "clip" clips the stored raw gradients itself (the whole recipe), "exact"
 * is fed torch's clipped gradients, which isolates the update rule from the 1-ulp differences
 * between our double norm and torch's float32 norm. */
static void run_case(FILE *f, const layout *L) {
    char name[64], mode[16];
    double lr, wd;
    long long warmup, total, steps;
    CHECK(fscanf(f, "%63s %15s %lf %lf %lld %lld %lld", name, mode, &lr, &wd, &warmup, &total,
                 &steps) == 7);
    size_t bytes = L->total * sizeof(float);
    float *param = malloc(bytes), *grad = malloc(bytes), *want = malloc(bytes);
    float *param_x = malloc(bytes), *grad_x = malloc(bytes);
    CHECK(param && grad && want && param_x && grad_x);
    read_floats(f, "init", param, L->total);
    memcpy(param_x, param, bytes);
    petl_adamw *opt = new_case_opt(L, param, grad, mode, lr, wd, warmup, total);
    petl_adamw *opt_x = new_case_opt(L, param_x, grad_x, mode, lr, wd, warmup, total);

    diff_stats clip = {0}, exact = {0};
    for (long long k = 1; k <= steps; k++) {
        char word[16];
        long long kk;
        double want_lr, want_norm;
        CHECK(fscanf(f, "%15s %lld %lf %lf", word, &kk, &want_lr, &want_norm) == 4);
        CHECK(strcmp(word, "step") == 0 && kk == k);
        read_floats(f, "grad", grad, L->total);
        read_floats(f, "clipped", grad_x, L->total);
        read_floats(f, "param", want, L->total);

        double norm = petl_adamw_clip(opt);
        double dn = fabs(norm - want_norm) / want_norm;
        CHECKF(dn <= NORM_TOL, "%s step %lld: norm %.9g, torch %.9g", name, k, norm, want_norm);
        if (dn > max_norm_diff) max_norm_diff = dn;
        double used = petl_adamw_step(opt);
        CHECKF(used == want_lr, "%s step %lld: lr %.17g, transformers %.17g", name, k, used,
               want_lr);
        CHECK(petl_adamw_step(opt_x) == want_lr);
        compare(name, "clip", k, param, want, L->total, CLIP_TOL, &clip);
        compare(name, "exact", k, param_x, want, L->total, REL_TOL, &exact);
    }
    size_t nv = (size_t)steps * L->total;
    printf("%s: %lld steps; own clip: max rel %.3g, max abs %.3g, %zu of %zu values differ; "
           "torch's clipped grads: max rel %.3g, max abs %.3g, %zu differ\n",
           name, steps, clip.rel, clip.abs, clip.n_differ, nv, exact.rel, exact.abs,
           exact.n_differ);
    /* The BERT rule is plain float32 arithmetic, as the NumPy reference: bit for bit. (torch's
     * own sqrt is not correctly rounded on this CPU, so the torch rule cannot be.) */
    if (strcmp(mode, "bert") == 0) CHECK(exact.n_differ == 0);
    if (clip.rel > max_param_diff) max_param_diff = clip.rel;
    if (exact.rel > max_param_diff) max_param_diff = exact.rel;
    CHECK(petl_adamw_step_count(opt) == steps);
    petl_adamw_free(opt);
    petl_adamw_free(opt_x);
    free(param);
    free(grad);
    free(want);
    free(param_x);
    free(grad_x);
}

static void check_sched(FILE *f) {
    double base;
    long long warmup, total, n;
    CHECK(fscanf(f, "%lf %lld %lld %lld", &base, &warmup, &total, &n) == 4);
    for (long long k = 0; k < n; k++) {
        double want;
        CHECK(fscanf(f, "%lf", &want) == 1);
        double got = petl_lr_linear_warmup(base, k, warmup, total);
        CHECKF(got == want, "schedule (%g, %lld, %lld) step %lld: %.17g, transformers %.17g", base,
               warmup, total, k, got, want);
    }
}

static void golden(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/optimiser_cases.txt", TEST_SRC_DIR);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    int c;
    while ((c = fgetc(f)) == '#')
        while ((c = fgetc(f)) != '\n' && c != EOF) {
        }
    ungetc(c, f);
    layout L = {0};
    char word[32];
    CHECK(fscanf(f, "%31s %zu", word, &L.n_groups) == 2 && strcmp(word, "groups") == 0);
    CHECK(L.n_groups <= MAX_GROUPS);
    for (size_t g = 0; g < L.n_groups; g++) {
        int d;
        CHECK(fscanf(f, "%zu %d", &L.sizes[g], &d) == 2);
        L.decay[g] = d != 0;
        L.total += L.sizes[g];
    }
    int n_cases = 0, n_sched = 0;
    while (fscanf(f, "%31s", word) == 1) {
        if (strcmp(word, "case") == 0) {
            run_case(f, &L);
            n_cases++;
        } else {
            CHECKF(strcmp(word, "sched") == 0, "unexpected '%s'", word);
            check_sched(f);
            n_sched++;
        }
    }
    fclose(f);
    CHECK(n_cases == 4 && n_sched >= 5);
    printf("golden: %d cases, %d schedules; max relative param difference %.3g, max relative "
           "norm difference %.3g\n",
           n_cases, n_sched, max_param_diff, max_norm_diff);
}

/* ------------------------------------------------------------------ determinism and resume */

/* A reproducible pseudo-random float in [-1, 1) from an index: no state to share. */
static float hash_float(uint64_t i) {
    uint64_t z = i * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / 8388608.0 - 1.0);
}

/* Big enough that the norm runs several batches of blocks and the steps several chunks. */
static const layout big = {
    .n_groups = 3, .sizes = {300001, 1000, 70013}, .decay = {true, false, true}, .total = 371014};

/* The gradient of step k (before clipping): alternately small (no clip) and large. */
static void fill_grad(float *grad, size_t n, int k) {
    float s = (k % 2) ? 1e-4f : 1e-2f;
    for (size_t i = 0; i < n; i++)
        grad[i] = s * hash_float((uint64_t)k * 1000003u + i);
}

static petl_adamw *new_big(float *param, float *grad, bool bias_correction) {
    petl_opt_group groups[MAX_GROUPS];
    make_groups(&big, param, grad, groups);
    petl_adamw_opts o;
    petl_adamw_opts_default(&o);
    o.lr = 1e-3;
    o.total_steps = 12;
    o.bias_correction = bias_correction;
    petl_adamw *opt;
    petl_error err;
    CHECK_OK(petl_adamw_new(groups, big.n_groups, &o, &opt, &err), &err);
    CHECK(petl_adamw_get_opts(opt)->warmup_steps == 1); /* int(12 * 0.1) */
    return opt;
}

/* Runs steps [from, to) on opt; norms[k] receives the pre-clip norm of step k. */
static void run_steps(petl_adamw *opt, float *grad, int from, int to, double *norms) {
    for (int k = from; k < to; k++) {
        fill_grad(grad, big.total, k);
        norms[k] = petl_adamw_clip(opt);
        petl_adamw_step(opt);
    }
}

static void resume_and_threads(bool bias_correction) {
    const int steps = 12, cut = 5;
    size_t bytes = big.total * sizeof(float);
    float *init = malloc(bytes), *ref = malloc(bytes), *param = malloc(bytes);
    float *grad = malloc(bytes);
    double norms_ref[12], norms[12];
    CHECK(init && ref && param && grad);
    for (size_t i = 0; i < big.total; i++)
        init[i] = 0.05f * hash_float(i + 77);

    /* Uninterrupted, one thread. */
    omp_set_num_threads(1);
    memcpy(ref, init, bytes);
    petl_adamw *opt = new_big(ref, grad, bias_correction);
    run_steps(opt, grad, 0, steps, norms_ref);
    petl_adamw_free(opt);
    CHECK(norms_ref[0] > 1.0 && norms_ref[1] < 1.0); /* both paths of the clip ran */
    CHECK(memcmp(ref, init, bytes) != 0);

    /* Same with 2 and 3 threads: bitwise equal. */
    for (int threads = 2; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        memcpy(param, init, bytes);
        opt = new_big(param, grad, bias_correction);
        run_steps(opt, grad, 0, steps, norms);
        petl_adamw_free(opt);
        CHECKF(memcmp(param, ref, bytes) == 0, "%d threads change the parameters", threads);
        CHECKF(memcmp(norms, norms_ref, sizeof norms) == 0, "%d threads change the norm", threads);
    }

    /* Interrupted after `cut` steps: save the state, drop the optimiser, build a new one from
     * the saved parameters and state, finish: bitwise equal to the uninterrupted run. */
    omp_set_num_threads(2);
    memcpy(param, init, bytes);
    opt = new_big(param, grad, bias_correction);
    run_steps(opt, grad, 0, cut, norms);
    size_t size = petl_adamw_state_size(opt);
    uint8_t *blob = malloc(size);
    float *saved = malloc(bytes);
    CHECK(blob && saved);
    petl_error err;
    CHECK(petl_adamw_save_state(opt, blob, size - 1, &err) == PETL_ERR_ARG);
    CHECK_OK(petl_adamw_save_state(opt, blob, size, &err), &err);
    memcpy(saved, param, bytes);
    petl_adamw_free(opt);
    memset(param, 0, bytes); /* the killed process's memory is gone */

    memcpy(param, saved, bytes);
    opt = new_big(param, grad, bias_correction);
    CHECK_OK(petl_adamw_load_state(opt, blob, size, "test", &err), &err);
    CHECK(petl_adamw_step_count(opt) == cut);
    run_steps(opt, grad, cut, steps, norms);
    CHECK(memcmp(param, ref, bytes) == 0);
    CHECK(memcmp(norms + cut, norms_ref + cut, (size_t)(steps - cut) * sizeof(double)) == 0);

    /* Malformed states are refused and change nothing. */
    size_t ng;
    petl_opt_group *gs = petl_adamw_groups(opt, &ng);
    CHECK(ng == 3 && gs[1].n == 1000 && gs[1].m && gs[1].v);
    float m0 = gs[0].m[0];
    int64_t step0 = petl_adamw_step_count(opt);
    CHECK(petl_adamw_load_state(opt, blob, size - 4, "t", &err) == PETL_ERR_SHAPE);
    CHECK(strstr(err.msg, "t: ") == err.msg);
    CHECK(petl_adamw_load_state(opt, blob, 10, "t", &err) == PETL_ERR_FORMAT);
    blob[0] = 'X';
    CHECK(petl_adamw_load_state(opt, blob, size, "t", &err) == PETL_ERR_FORMAT);
    blob[0] = 'P';
    blob[8] = 2; /* version */
    CHECK(petl_adamw_load_state(opt, blob, size, "t", &err) == PETL_ERR_FORMAT);
    blob[8] = 1;
    blob[32] ^= 1; /* group 0's size */
    CHECK(petl_adamw_load_state(opt, blob, size, "t", &err) == PETL_ERR_SHAPE);
    CHECK(strstr(err.msg, "group 0") != NULL);
    blob[32] ^= 1;
    blob[24] = 2; /* group count */
    CHECK(petl_adamw_load_state(opt, blob, size, "t", &err) == PETL_ERR_SHAPE);
    CHECK(gs[0].m[0] == m0 && petl_adamw_step_count(opt) == step0);

    petl_adamw_free(opt);
    free(blob);
    free(saved);
    free(init);
    free(ref);
    free(param);
    free(grad);
}

/* ---------------------------------------------------------------------------- small cases */

static void misc(void) {
    /* Schedule edge cases beyond the golden ones. */
    CHECK(petl_lr_linear_warmup(1.0, 0, 0, 10) == 1.0);
    CHECK(petl_lr_linear_warmup(1.0, 10, 0, 10) == 0.0);
    CHECK(petl_lr_linear_warmup(1.0, 11, 0, 10) == 0.0);
    CHECK(petl_lr_linear_warmup(1.0, 0, 4, 10) == 0.0);
    CHECK(petl_lr_linear_warmup(1.0, 2, 4, 10) == 0.5);
    CHECK(petl_warmup_steps(1000, 0.1) == 100 && petl_warmup_steps(9, 0.1) == 0);
    CHECK(petl_warmup_steps(0, 0.1) == 0);

    /* Clip: the norm after clipping is max_norm (up to the 1e-6 and float rounding); no clip
     * below; a non-finite norm leaves the gradients alone. */
    float g1[3] = {3, 0, 4}, g2[2] = {0, 0}, p[5] = {0};
    petl_opt_group gs[2] = {{.param = p, .grad = g1, .n = 3, .decay = true},
                            {.param = p + 3, .grad = g2, .n = 2, .decay = false}};
    CHECK(petl_grad_norm(gs, 2) == 5.0);
    CHECK(petl_clip_grad_norm(gs, 2, 1.0) == 5.0);
    CHECK(fabs(petl_grad_norm(gs, 2) - 1.0) < 1e-6);
    g1[0] = 0.3f, g1[1] = 0.0f, g1[2] = 0.4f;
    double n0 = petl_clip_grad_norm(gs, 2, 1.0);
    CHECK(fabs(n0 - 0.5) < 1e-7 && g1[0] == 0.3f && g1[2] == 0.4f);
    g2[0] = INFINITY;
    CHECK(isinf(petl_clip_grad_norm(gs, 2, 1.0)) && g1[0] == 0.3f);

    /* Argument checks. */
    petl_adamw_opts o;
    petl_adamw_opts_default(&o);
    CHECK(o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-6 && o.weight_decay == 0.01 &&
          !o.bias_correction && o.max_grad_norm == 1.0);
    petl_adamw *opt = NULL;
    petl_error err;
    CHECK(petl_adamw_new(gs, 2, &o, &opt, &err) == PETL_ERR_ARG && !opt); /* total_steps 0 */
    o.total_steps = 10;
    o.beta1 = 1.0;
    CHECK(petl_adamw_new(gs, 2, &o, &opt, &err) == PETL_ERR_ARG);
    o.beta1 = 0.9;
    o.lr = NAN;
    CHECK(petl_adamw_new(gs, 2, &o, &opt, &err) == PETL_ERR_ARG);
    o.lr = 1e-3;
    gs[1].grad = NULL;
    CHECK(petl_adamw_new(gs, 2, &o, &opt, &err) == PETL_ERR_ARG);
    gs[1].grad = g2;
    /* Zero groups and empty groups are fine. */
    CHECK_OK(petl_adamw_new(NULL, 0, &o, &opt, &err), &err);
    CHECK(petl_adamw_state_size(opt) == 32);
    petl_adamw_step(opt);
    petl_adamw_free(opt);
    gs[1].n = 0;
    CHECK_OK(petl_adamw_new(gs, 2, &o, &opt, &err), &err);
    petl_adamw_free(opt);
    petl_adamw_free(NULL);
}

int main(void) {
    golden();
    resume_and_threads(false);
    resume_and_threads(true);
    misc();
    CHECK_DONE("test_optimiser");
}
