/* AdamW with decoupled weight decay, global gradient-norm clipping and the linear warmup / decay
 * learning-rate schedule: internal API used by the trainer.
 *
 * Two update rules, chosen by petl_adamw_opts.bias_correction:
 *   false (the paper's recipe): google-research/bert (and adapter-bert) optimization.py,
 *         AdamWeightDecayOptimizer, in float32 as TensorFlow computes it:
 *             m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *             u = m / (sqrt(v) + eps);  if decay: u += wd p;  p -= lr u
 *   true: torch.optim.AdamW (decoupled weight decay first, then the bias-corrected step):
 *             if decay: p *= 1 - lr wd
 *             m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
 *             p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Weight decay applies only to groups with decay = true (the trainer passes false for LayerNorm
 * gains and biases, and for every bias, as the authors' exclude_from_weight_decay).
 *
 * Determinism: updates are element-wise (no reductions), and the gradient norm is a sum in
 * double over fixed blocks of PETL_OPT_BLOCK elements combined in a fixed order, so results
 * are bitwise identical for any OpenMP thread count.
 *
 * Resume: the whole state is the step count plus m and v. petl_adamw_save_state /
 * petl_adamw_load_state round-trip it bit-exactly through a byte blob; petl_adamw_groups gives
 * direct access to the m / v buffers for writing them as safetensors tensors instead. */
#ifndef PETL_OPTIMISER_H
#define PETL_OPTIMISER_H

#include "petl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PETL_OPT_BLOCK 1024 /* elements per partial sum of the gradient norm */

/* One trained tensor (or several concatenated: the optimiser only sees flat arrays). */
typedef struct {
    float *param; /* [n] updated in place by petl_adamw_step; borrowed, outlives the optimiser */
    float *grad;  /* [n] read by the step, scaled in place by the clip; borrowed */
    size_t n;     /* element count (0 allowed) */
    bool decay;   /* decoupled weight decay applies to this group */
    /* [n] each; ignored on input to petl_adamw_new. In the groups petl_adamw_groups returns
     * they point into the optimiser's own storage (owned by it, zero at the start). */
    float *m, *v;
} petl_opt_group;

typedef struct {
    double lr;            /* peak learning rate, reached at the end of warmup */
    double beta1;         /* 0.9 */
    double beta2;         /* 0.999 */
    double eps;           /* 1e-6 */
    double weight_decay;  /* 0.01 */
    bool bias_correction; /* false: BERT-style (the paper); true: torch.optim.AdamW */
    double max_grad_norm; /* 1.0; <= 0 disables petl_adamw_clip */
    int64_t total_steps;  /* optimiser steps of the whole run; required (> 0) */
    int64_t warmup_steps; /* < 0: petl_warmup_steps(total_steps, 0.1) */
} petl_adamw_opts;

typedef struct petl_adamw petl_adamw;

/* The paper's recipe; lr 1e-4 and total_steps 0 must be set by the caller. */
void petl_adamw_opts_default(petl_adamw_opts *o);

/* Warmup steps for a fraction of the run, truncated as the authors' run_classifier.py does:
 * int(total * ratio). */
int64_t petl_warmup_steps(int64_t total_steps, double ratio);

/* transformers.get_linear_schedule_with_warmup: the learning rate of the optimiser step that
 * follows `step` completed steps (0 for the very first step):
 *   step < warmup:  base_lr * step / max(1, warmup)
 *   else:           base_lr * max(0, (total - step) / max(1, total - warmup))
 * computed in double exactly as LambdaLR does. Note the first step runs at lr 0 when
 * warmup > 0, as in transformers. */
double petl_lr_linear_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total);

/* L2 norm of all gradients together, in double (see the determinism note). */
double petl_grad_norm(const petl_opt_group *groups, size_t n_groups);
/* torch.nn.utils.clip_grad_norm_: norm = petl_grad_norm; coef = max_norm / (norm + 1e-6) in
 * float32 as torch; when coef < 1 every gradient is multiplied by it. Returns the norm before
 * clipping. A non-finite norm leaves the gradients untouched (the caller should skip the step
 * and report it; torch would turn them into NaN or zero). */
double petl_clip_grad_norm(petl_opt_group *groups, size_t n_groups, double max_norm);

/* Creates an optimiser over a copy of groups[n_groups] (the param / grad arrays stay borrowed)
 * with m and v zeroed in one allocation. *out is owned by the caller: petl_adamw_free. */
petl_status petl_adamw_new(const petl_opt_group *groups, size_t n_groups,
                           const petl_adamw_opts *opts, petl_adamw **out, petl_error *err);
void petl_adamw_free(petl_adamw *opt);

/* Clips the gradients of all groups to opts.max_grad_norm (no-op when <= 0, still returns the
 * norm). Returns the norm before clipping. */
double petl_adamw_clip(petl_adamw *opt);
/* One update of every group with the scheduled learning rate for the current step count, then
 * counts the step. Returns the learning rate it used. */
double petl_adamw_step(petl_adamw *opt);
/* The learning rate the next petl_adamw_step will use. */
double petl_adamw_lr(const petl_adamw *opt);

/* Completed steps, and setting it (for a resume that restores m / v through the groups). */
int64_t petl_adamw_step_count(const petl_adamw *opt);
void petl_adamw_set_step_count(petl_adamw *opt, int64_t step);
/* The optimiser's groups (m and v filled in); *n_groups receives the count. Borrowed. */
petl_opt_group *petl_adamw_groups(petl_adamw *opt, size_t *n_groups);
const petl_adamw_opts *petl_adamw_get_opts(const petl_adamw *opt);

/* Serialised state: "PETLADAM", u32 version (1), u32 0, u64 step, u64 n_groups,
 * u64 n[n_groups], then for each group m[n] and v[n] as little-endian float32 bit patterns.
 * petl_adamw_state_size gives the exact byte count. Save fails (PETL_ERR_ARG) when cap is too
 * small; load checks the magic, version, group count and sizes against the optimiser
 * (PETL_ERR_FORMAT / PETL_ERR_SHAPE, `what` names the source) and changes nothing on error. */
size_t petl_adamw_state_size(const petl_adamw *opt);
petl_status petl_adamw_save_state(const petl_adamw *opt, void *buf, size_t cap, petl_error *err);
petl_status petl_adamw_load_state(petl_adamw *opt, const void *buf, size_t len, const char *what,
                                  petl_error *err);

#endif
