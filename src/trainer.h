/* The training loop: epochs of length-grouped batches, AdamW with clipping and the linear
 * warmup / decay schedule, dev evaluation after each epoch keeping the best epoch, a JSON-lines
 * log, and checkpoints that a killed run resumes from bit for bit.
 * Internal API (used by tools/cmd_train.c, cmd_eval.c, cmd_predict.c).
 *
 * Determinism and resume. Everything random is a pure function of the seed and the position:
 * the batch order of epoch e comes from (seed, e) (petl_batcher_plan_train), the dropout of
 * global step s from (seed, s), and the head / adapter initialisation from the seed. So the state
 * of a run between two steps is exactly: the parameters, AdamW's m / v and step count, the
 * position (epoch, batch within the epoch) and the best-so-far (epoch, metrics, a copy of the
 * parameters). A checkpoint stores all of it in one safetensors file (tensors "param/NAME",
 * "adam_m/NAME", "adam_v/NAME", "best/NAME", and the rest as JSON in the metadata key
 * "petl_checkpoint"), written atomically; a resumed run with the same options and thread count
 * continues with bitwise the same numbers as a run never stopped. The options that change
 * the numbers are stored too, and a resume with different ones is refused.
 *
 * The library never prints: progress goes to a callback. */
#ifndef PETL_TRAINER_H
#define PETL_TRAINER_H

#include "batcher.h"
#include "data.h"
#include "squad.h"
#include "train.h"

/* A dev evaluation other than petl_evaluate's (SQuAD: decode the spans and score them): fills
 * *out for the model as it is now. ctx is the training context, usable for inference. */
typedef petl_status (*petl_eval_fn)(petl_task_model *tm, petl_train_ctx *ctx, void *user,
                                    petl_metric_set *out, petl_error *err);

typedef struct {
    double lr;                /* peak learning rate */
    int epochs;               /* >= 1 */
    int batch;                /* >= 1 */
    uint64_t seed;            /* batch order, dropout (the task model's init uses its own seed) */
    double warmup;            /* fraction of the steps with a linear warmup (0.1) */
    double weight_decay;      /* 0.01, on petl_param.decay tensors only */
    double max_grad_norm;     /* 1.0 */
    bool bias_correction;     /* false: BERT-style Adam as the paper; true: torch AdamW */
    bool pad_to_max;          /* pad every batch to max_len instead of its longest row */
    int eval_batch;           /* batch size for dev evaluation (0: the training batch) */
    int64_t checkpoint_every; /* steps between checkpoints (0: only at epoch ends) */
    const char *checkpoint_path; /* NULL: no checkpoints */
    bool resume;                 /* continue from checkpoint_path when it exists */
    const char *log_path;        /* JSON-lines log (appended); NULL: none */
    int log_every;               /* steps between log lines (10); the first and last steps always */
    petl_eval_fn evaluate;       /* NULL: petl_evaluate(dev) with the task's metrics */
    void *evaluate_user;
    const char *resume_key; /* more settings a resume must match (SQuAD's windowing and
                               decoding); NULL: none */
    int64_t eval_every;     /* also evaluate on dev every N steps (0: only after each epoch); logged
                               with "train_s", the training time without evaluations */
    double stop_at;         /* with eval_every: stop at the first evaluation whose score (the task's
                               main metric) is >= stop_at, keeping that model (time to accuracy);
                               NAN: never */
} petl_train_opts;

void petl_train_opts_default(petl_train_opts *o);

typedef enum {
    PETL_PROGRESS_START,      /* before the first step (after a resume: step > 0) */
    PETL_PROGRESS_STEP,       /* after every optimiser step */
    PETL_PROGRESS_EVAL_START, /* dev evaluation of an epoch begins */
    PETL_PROGRESS_EPOCH,      /* dev evaluation done: dev, best */
    PETL_PROGRESS_CHECKPOINT, /* a checkpoint was written */
    PETL_PROGRESS_SKIPPED,    /* a step was skipped: non-finite gradient norm */
} petl_progress_kind;

typedef struct {
    petl_progress_kind kind;
    int64_t step, total_steps;  /* completed optimiser steps */
    int epoch, epochs;          /* 0-based epoch in progress */
    double loss;                /* this step's loss */
    double mean_loss;           /* mean loss of the epoch so far */
    double lr, grad_norm;       /* of this step (grad_norm before clipping) */
    double tokens_per_s;        /* real tokens through forward + backward, since the start */
    double elapsed_s;           /* since this process started training */
    const petl_metric_set *dev; /* PETL_PROGRESS_EPOCH: the epoch's dev metrics */
    bool best;                  /* PETL_PROGRESS_EPOCH: a new best epoch */
    const char *path;           /* PETL_PROGRESS_CHECKPOINT */
} petl_train_progress;

typedef void (*petl_progress_fn)(const petl_train_progress *p, void *user);

typedef struct {
    int best_epoch;       /* 0-based; -1 without a dev set (the last epoch is kept) */
    petl_metric_set best; /* dev metrics of the best epoch */
    int64_t steps;        /* optimiser steps of the whole run */
    int64_t skipped;      /* steps skipped for a non-finite gradient norm */
    bool resumed;         /* started from a checkpoint */
    int64_t resumed_step;
    double train_seconds;   /* in this process */
    int64_t stopped_step;   /* stop_at reached after this many steps (0: ran to the end) */
    double stopped_train_s; /* training seconds (evaluations excluded) when it was reached */
} petl_train_result;

/* Trains tm on `train` (labels / targets filled; a span head: span targets, with
 * petl_train_step_span). After each epoch evaluates on `dev` (may be NULL) with the task's
 * metrics, or with o->evaluate when set (task may then be NULL; `dev` still sizes the context
 * and names the dev set in checkpoints), and remembers the best epoch (by
 * petl_metric_set.score). On return tm holds the best epoch's parameters (the last epoch's
 * without a dev set). petl_train_ctx for max_batch x max_len is created inside. */
petl_status petl_train(petl_task_model *tm, const petl_task *task, const petl_batcher *train,
                       const petl_batcher *dev, const petl_train_opts *o, petl_progress_fn cb,
                       void *user, petl_train_result *res, petl_error *err);

/* Runs the model over every example of b (no dropout) in length-sorted batches and writes
 * logits[i * num_labels + c] in the INPUT order of b (num_labels 1 for regression). ctx may be
 * NULL (one is created for the call). */
petl_status petl_predict_all(petl_task_model *tm, petl_train_ctx *ctx, const petl_batcher *b,
                             int batch, float *logits, petl_error *err);

/* Evaluates tm on b with the task's metrics (gold = b's labels / targets). preds[n] (optional)
 * receives the predicted class index or regression value per example, in input order. */
petl_status petl_evaluate(petl_task_model *tm, petl_train_ctx *ctx, const petl_task *task,
                          const petl_batcher *b, int batch, double *preds, petl_metric_set *out,
                          petl_error *err);

/* The span head over every example of b (no dropout), in length-sorted batches: start / end
 * logits [count, seq] in the INPUT order of b, each row padded with -INFINITY after its tokens
 * (petl_squad_decode's layout; seq >= petl_batcher_max_len(b)). ctx may be NULL. */
petl_status petl_predict_spans_all(petl_task_model *tm, petl_train_ctx *ctx, const petl_batcher *b,
                                   int batch, int seq, float *start_logits, float *end_logits,
                                   petl_error *err);

/* SQuAD evaluation of a span model: b holds the windows of f in order (petl_batcher_add_encoded
 * of each feature), which are run, decoded (petl_squad_decode with p) and scored against ds's
 * gold answers. *out: exact_match and f1 as fractions (the official script's percentages / 100,
 * like every petl metric), score = f1 (the best epoch is the best F1). preds (optional,
 * [petl_squad_count(ds)]) receives the predictions; their texts point into ds. */
petl_status petl_squad_evaluate(petl_task_model *tm, petl_train_ctx *ctx, const petl_squad *ds,
                                const petl_squad_features *f, const petl_batcher *b,
                                const petl_squad_params *p, int batch, petl_squad_prediction *preds,
                                petl_metric_set *out, petl_error *err);

#endif
