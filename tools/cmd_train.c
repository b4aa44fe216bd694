/* petl train: trains a task adapter (or one of the paper's baselines) on a frozen base model and
 * saves the best epoch's parameters as an adapter folder. */
#include "cli.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The peak learning rate when --lr is not given, per what is trained: the library's default
 * (the paper's adapter rate) for adapters, BERT's for full / top-K fine-tuning; the cheap
 * baselines come from the learning-rate sweeps of docs/results.md (all-MiniLM-L6-v2, five GLUE
 * tasks): LayerNorm-only peaks at 1e-3..3e-3 and collapses at 1e-2, and a head of a few hundred
 * parameters barely moves at adapter rates in a few epochs (it peaks at 1e-1..3e-1). SQuAD's
 * span head, which scores every token of a window from the last hidden states, diverges at 1e-1
 * and learns at 1e-2. */
static double default_lr(petl_tune tune, bool squad) {
    switch (tune) {
    case PETL_TUNE_FULL:
    case PETL_TUNE_TOP: return 3e-5;
    case PETL_TUNE_LAYERNORM: return 1e-3;
    case PETL_TUNE_HEAD: return squad ? 1e-2 : 1e-1;
    default: {
        petl_train_opts d;
        petl_train_opts_default(&d);
        return d.lr;
    }
    }
}

/* --max-len's default but for SQuAD (whose windows are the library's max_seq_len). */
#define GLUE_MAX_LEN 128
#define MAX_NAMES 16

/* A small rate as the help writes it: 3e-4, not 0.0003 or 3e-04. */
static const char *short_real(char *buf, size_t cap, double x) {
    int mantissa, exp;
    char e[32];
    snprintf(e, sizeof e, "%.0e", x);
    if (sscanf(e, "%de%d", &mantissa, &exp) == 2)
        snprintf(buf, cap, "%de%d", mantissa, exp);
    else
        snprintf(buf, cap, "%g", x);
    return buf;
}

/* The help lines of the options that take names and of --lr: the library's names and
 * defaults. */
#define N_OF(a) (sizeof(a) / sizeof *(a))

static size_t tune_names(const char *names[MAX_NAMES], char top[32]) {
    size_t n = 0;
    while (n < MAX_NAMES && (names[n] = petl_tune_name((petl_tune)n)))
        n++;
    snprintf(top, 32, "%s:K", names[PETL_TUNE_TOP]);
    names[PETL_TUNE_TOP] = top;
    return n;
}

static void help_tune(FILE *f, const petl_tune_config *d) {
    static const char *const what[] = {
        [PETL_TUNE_ADAPTER] = "adapters + LayerNorms + head",
        [PETL_TUNE_FULL] = "every weight",
        [PETL_TUNE_TOP] = "the top K layers + head",
        [PETL_TUNE_LAYERNORM] = "LayerNorms + head",
        [PETL_TUNE_HEAD] = "the head only",
    };
    const char *names[MAX_NAMES];
    char top[32];
    size_t n = tune_names(names, top);
    cli_help_names(f, "--tune WHAT", names, n, what, N_OF(what), d->tune);
}

static void help_act(FILE *f, const petl_tune_config *d) {
    const char *names[MAX_NAMES];
    size_t n = 0;
    while (n < MAX_NAMES && (names[n] = petl_adapter_act_name((petl_adapter_act)n)))
        n++;
    cli_help_names(f, "--adapter-act F", names, n, NULL, 0, d->adapter_act);
}

static void help_placement(FILE *f, const petl_tune_config *d) {
    static const char *const what[] = {
        [PETL_PLACE_BOTH] = "after attention and feed-forward",
        [PETL_PLACE_FFN] = "after the feed-forward only",
    };
    const char *names[MAX_NAMES];
    size_t n = 0;
    while (n < MAX_NAMES && (names[n] = petl_placement_name((petl_adapter_placement)n)))
        n++;
    cli_help_names(f, "--placement P", names, n, what, N_OF(what), d->placement);
}

static void help_lr(FILE *f) {
    const char *names[MAX_NAMES];
    char top[32], text[512], r1[16], r2[16];
    size_t n = tune_names(names, top);
    size_t u = (size_t)snprintf(text, sizeof text, "peak learning rate (by --tune: ");
    for (size_t i = 0; i < n && u < sizeof text; i++) {
        double glue = default_lr((petl_tune)i, false), squad = default_lr((petl_tune)i, true);
        u += (size_t)snprintf(text + u, sizeof text - u, "%s%s %s", i ? ", " : "", names[i],
                              short_real(r1, sizeof r1, glue));
        if (squad != glue && u < sizeof text)
            u += (size_t)snprintf(text + u, sizeof text - u, " (squad %s)",
                                  short_real(r2, sizeof r2, squad));
    }
    if (u < sizeof text) snprintf(text + u, sizeof text - u, ": see docs/results.md)");
    cli_help_line(f, "--lr X", text);
}

static void usage(FILE *f) {
    petl_tune_config tc;
    petl_train_opts to;
    petl_squad_params sp;
    petl_tune_config_default(&tc, NULL);
    petl_train_opts_default(&to);
    petl_squad_params_default(&sp);
    char sd[16];
    fprintf(
        f, "usage: petl train --task TASK --data DIR --out ADAPTER_DIR [OPTIONS]\n\n"
           "Trains on DIR/train.tsv (GLUE layout), evaluates on the dev set after every epoch and\n"
           "saves the best epoch as ADAPTER_DIR (adapter_config.json + adapter.safetensors).\n\n"
           "  --model DIR          base model folder (default: $PETL_MODEL or\n"
           "                       models/all-MiniLM-L6-v2)\n"
           "  --task TASK          cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, squad (see\n"
           "                       below), or a generic spec such as tsv:text=0,label=1 or\n"
           "                       jsonl:text=review,label=stars\n"
           "  --data DIR           task folder: train and dev files (train.tsv, dev.tsv; MNLI\n"
           "                       dev_matched.tsv; generic: train.EXT, dev.EXT)\n"
           "  --out DIR            adapter folder to write\n");
    help_tune(f, &tc);
    fprintf(f, "  --adapter-size M     bottleneck size (%d)\n", tc.adapter_size);
    help_act(f, &tc);
    fprintf(f, "  --init-sd X          adapter weight init sd, truncated normal (%s)\n",
            short_real(sd, sizeof sd, tc.adapter_init_sd));
    help_placement(f, &tc);
    fprintf(f,
            "  --freeze-layernorms  with --tune adapter: keep the base's LayerNorms (adapters +\n"
            "                       head only: what an AdapterHub adapter holds, petl export)\n");
    help_lr(f);
    fprintf(
        f,
        "  --epochs N           (%d)\n"
        "  --batch N            (%d)\n"
        "  --max-len N          truncate to N tokens, special tokens included (%d; squad:\n"
        "                       the window length, %d)\n"
        "  --seed N             initialisation, batch order and dropout (%llu)\n"
        "  --warmup X           fraction of the steps with a linear warmup (%g)\n"
        "  --weight-decay X     decoupled, not on LayerNorms or biases (%g)\n"
        "  --bias-correction    Adam with bias correction (torch AdamW); default: BERT-style\n"
        "                       without, as the paper\n"
        "  --pad-to-max         pad every batch to --max-len (default: to its longest row)\n"
        "  --log FILE           JSON-lines log: loss, lr, grad norm, tokens/s; dev metrics per\n"
        "                       epoch (appended)\n"
        "  --log-every N        steps between log lines (%d)\n",
        to.epochs, to.batch, GLUE_MAX_LEN, sp.max_seq_len, (unsigned long long)to.seed, to.warmup,
        to.weight_decay, to.log_every);
    fprintf(
        f,
        "  --eval-every N       also evaluate on dev every N steps, logged with the training\n"
        "                       time without evaluations (\"train_s\")\n"
        "  --stop-at X          with --eval-every: stop at the first evaluation whose main\n"
        "                       metric (accuracy, F1, MCC, Spearman) is >= X and keep that\n"
        "                       model (time to accuracy)\n"
        "  --checkpoint FILE    checkpoint file (default: OUT.checkpoint.safetensors); an "
        "existing\n"
        "                       file there must be a petl checkpoint\n"
        "  --checkpoint-every N also checkpoint every N steps (default: at epoch ends only)\n"
        "  --keep-checkpoint    keep the checkpoint after a successful run (default: removed)\n"
        "  --resume             continue from the checkpoint when it exists (same options and\n"
        "                       --threads give the same result as an uninterrupted run)\n"
        "  --force              replace an existing petl adapter folder (never any other folder\n"
        "                       or file: those are refused)\n"
        "  --threads N          OpenMP / OpenBLAS threads (default: OMP_NUM_THREADS or all)\n");
    fprintf(
        f,
        "  --precision P        fp32 (default) or bf16: the frozen base's linear layers with\n"
        "                       bf16 inputs and fp32 sums (forward and input gradients), about\n"
        "                       twice as fast on AVX512-BF16 CPUs; tuned weights stay fp32\n"
        "                       (docs/performance.md has the effect on GLUE dev scores)\n"
        "  -h, --help           this help\n\n"
        "Prints the trained-parameter count, a progress bar (plain lines when stderr is not a\n"
        "terminal) and, on stdout, one JSON object with the best epoch's dev metrics.\n\n"
        "SQuAD v1.1 (--task squad): a span head (start / end logits of every token) on the\n"
        "question + context windows of Google's run_squad.py; dev metrics exact_match and f1\n"
        "(official script, as fractions: x 100 for its percentages), best epoch by f1.\n"
        "  --data PATH          a folder with train-v1.1.json (trains on it, evaluates on its\n"
        "                       dev-v1.1.json when present), or a SQuAD file / a folder with\n"
        "                       only dev-v1.1.json, split by article: trains on --train-articles,\n"
        "                       evaluates on --eval-articles (no article in both)\n"
        "  --train-articles R   B:E (0-based, E exclusive), B:, :E, train (0:38), eval (38:),\n"
        "                       all (default: train for a split file, else all)\n"
        "  --eval-articles R    (default: eval for a split file, else all)\n"
        "  --max-train-questions N, --max-eval-questions N\n"
        "                       only the first N questions of the range (quick runs)\n"
        "  --doc-stride N       step between the starts of a context's windows, tokens (%d)\n"
        "  --max-query-len N    question tokens kept (%d)\n"
        "  --max-answer-len N   longest answer decoded, tokens (%d)\n"
        "  --n-best N           start / end candidates per window in decoding (%d)\n"
        "These settings are recorded in adapter_config.json; eval and predict use them.\n",
        sp.doc_stride, sp.max_query_len, sp.max_answer_len, sp.n_best);
}

/* The command line. tc, to and sp start from the library's defaults (petl_tune_config_default,
 * petl_train_opts_default, petl_squad_params_default) and take the options as given. */
typedef struct {
    const char *model, *task, *data, *out, *ckpt, *precision;
    petl_tune_config tc; /* the choices of --tune ... --placement; the rest set at load */
    petl_train_opts to;  /* checkpoint_path: set when the outputs are claimed */
    petl_squad_params sp;
    int max_len, threads; /* max_len 0: GLUE_MAX_LEN, or squad's window length */
    double lr;            /* < 0: default_lr */
    /* squad */
    const char *train_articles, *eval_articles; /* NULL: the defaults of the data layout */
    long max_train_q, max_eval_q;
    bool force, keep_ckpt;
} train_opts;

/* --tune, --adapter-act, --placement: CLI_CUSTOM entries of the option table, dst the
 * petl_tune_config. */
static int parse_name(const char *cmd, const char *opt, petl_status s, const petl_error *err) {
    if (s == PETL_OK) return 0;
    fprintf(stderr, "petl %s: %s: %s\n", cmd, opt, err->msg);
    return -1;
}

static int parse_tune(const char *cmd, const char *opt, const char *v, void *dst) {
    petl_tune_config *tc = dst;
    petl_error err = {0};
    return parse_name(cmd, opt, petl_tune_parse(v, &tc->tune, &tc->top_k, &err), &err);
}

static int parse_act(const char *cmd, const char *opt, const char *v, void *dst) {
    petl_tune_config *tc = dst;
    petl_error err = {0};
    return parse_name(cmd, opt, petl_adapter_act_parse(v, &tc->adapter_act, &err), &err);
}

static int parse_placement(const char *cmd, const char *opt, const char *v, void *dst) {
    petl_tune_config *tc = dst;
    petl_error err = {0};
    return parse_name(cmd, opt, petl_placement_parse(v, &tc->placement, &err), &err);
}

/* Returns CLI_GO_ON, or the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, train_opts *o) {
    *o = (train_opts){.model = cli_default_model(), .lr = -1};
    petl_tune_config_default(&o->tc, NULL);
    petl_train_opts_default(&o->to);
    petl_squad_params_default(&o->sp);
    petl_train_opts *to = &o->to;
    petl_squad_params *sp = &o->sp;
    long seed = (long)to->seed, ckpt_every = (long)to->checkpoint_every,
         eval_every = (long)to->eval_every;
    double init_sd = o->tc.adapter_init_sd;
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_STR("--task", &o->task),
        CLI_OPT_STR("--data", &o->data),
        CLI_OPT_STR("--out", &o->out),
        CLI_OPT_STR("--log", &to->log_path),
        CLI_OPT_STR("--checkpoint", &o->ckpt),
        CLI_OPT_CUSTOM("--tune", parse_tune, &o->tc),
        CLI_OPT_INT("--adapter-size", &o->tc.adapter_size, 1, 1 << 16),
        CLI_OPT_CUSTOM("--adapter-act", parse_act, &o->tc),
        CLI_OPT_CUSTOM("--placement", parse_placement, &o->tc),
        CLI_OPT_DOUBLE("--init-sd", &init_sd, 0, 1),
        CLI_OPT_DOUBLE("--lr", &o->lr, 0, 10),
        CLI_OPT_DOUBLE("--warmup", &to->warmup, 0, 1),
        CLI_OPT_DOUBLE("--weight-decay", &to->weight_decay, 0, 10),
        CLI_OPT_INT("--epochs", &to->epochs, 1, 100000),
        CLI_OPT_INT("--batch", &to->batch, 1, 1 << 16),
        CLI_OPT_INT("--max-len", &o->max_len, 3, 1 << 20),
        CLI_OPT_PRECISION(&o->precision),
        CLI_OPT_INT("--threads", &o->threads, 1, 1024),
        CLI_OPT_INT("--log-every", &to->log_every, 1, 1L << 30),
        CLI_OPT_LONG("--eval-every", &eval_every, 1, 1L << 40),
        CLI_OPT_DOUBLE("--stop-at", &to->stop_at, -1e9, 1e9),
        CLI_OPT_LONG("--checkpoint-every", &ckpt_every, 0, 1L << 40),
        CLI_OPT_STR("--train-articles", &o->train_articles),
        CLI_OPT_STR("--eval-articles", &o->eval_articles),
        CLI_OPT_LONG("--max-train-questions", &o->max_train_q, 1, 1L << 40),
        CLI_OPT_LONG("--max-eval-questions", &o->max_eval_q, 1, 1L << 40),
        CLI_OPT_INT("--doc-stride", &sp->doc_stride, 1, 1 << 20),
        CLI_OPT_INT("--max-query-len", &sp->max_query_len, 1, 1 << 20),
        CLI_OPT_INT("--max-answer-len", &sp->max_answer_len, 1, 1 << 20),
        CLI_OPT_INT("--n-best", &sp->n_best, 1, 1 << 20),
        CLI_OPT_LONG("--seed", &seed, 0, 0x7fffffffL),
        CLI_OPT_FLAG("--resume", &to->resume),
        CLI_OPT_FLAG("--force", &o->force),
        CLI_OPT_FLAG("--bias-correction", &to->bias_correction),
        CLI_OPT_FLAG("--pad-to-max", &to->pad_to_max),
        CLI_OPT_FLAG("--keep-checkpoint", &o->keep_ckpt),
        CLI_OPT_FLAG("--freeze-layernorms", &o->tc.freeze_layernorms),
    };
    int rc = cli_parse_options("train", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    to->seed = (uint64_t)seed;
    to->checkpoint_every = ckpt_every;
    to->eval_every = eval_every;
    o->tc.adapter_init_sd = (float)init_sd;
    if (!o->task || !o->data || !o->out) {
        fprintf(stderr, "petl train: --task, --data and --out are required (petl train --help)\n");
        return 2;
    }
    const bool squad = !strcmp(o->task, "squad");
    to->lr = o->lr < 0 ? default_lr(o->tc.tune, squad) : o->lr;
    if (!o->max_len) o->max_len = squad ? sp->max_seq_len : GLUE_MAX_LEN;
    sp->max_seq_len = o->max_len;
    if (!squad && (o->train_articles || o->eval_articles || o->max_train_q || o->max_eval_q)) {
        fprintf(stderr, "petl train: --train-articles, --eval-articles and --max-*-questions are "
                        "for --task squad\n");
        return 2;
    }
    if (!isnan(to->stop_at) && !to->eval_every) {
        fprintf(stderr, "petl train: --stop-at needs --eval-every\n");
        return 2;
    }
    return CLI_GO_ON;
}

/* ----------------------------------------------------------------------------- progress */

typedef struct {
    bool tty;
    int64_t every; /* steps between plain lines when not a terminal */
    bool bar_open; /* a progress bar line is on screen without its newline */
} progress;

static void fmt_eta(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void print_metrics(const petl_metric_set *m) {
    for (size_t i = 0; i < m->count; i++)
        fprintf(stderr, " %s %.4f", petl_metric_name(m->metric[i]), m->value[i]);
}

static void on_progress(const petl_train_progress *p, void *user) {
    progress *pg = user;
    switch (p->kind) {
    case PETL_PROGRESS_START:
        if (p->step > 0)
            fprintf(stderr, "resuming at step %lld of %lld (epoch %d)\n", (long long)p->step,
                    (long long)p->total_steps, p->epoch + 1);
        break;
    case PETL_PROGRESS_STEP:
    case PETL_PROGRESS_SKIPPED: {
        if (p->kind == PETL_PROGRESS_SKIPPED) {
            if (pg->bar_open) fputc('\n', stderr), pg->bar_open = false;
            fprintf(stderr, "step %lld: non-finite gradient norm, step skipped\n",
                    (long long)p->step);
        }
        /* Steps run at the tokens/s measured so far; the ETA is the steps left at the mean
         * time per step of this process. */
        static int64_t first_step = -1;
        if (first_step < 0) first_step = p->step - 1;
        double per = p->elapsed_s / (double)(p->step - first_step);
        char eta[32];
        fmt_eta(eta, sizeof eta, per * (double)(p->total_steps - p->step));
        if (pg->tty) {
            int width = 24, fill = (int)(width * p->step / (p->total_steps ? p->total_steps : 1));
            char bar[32];
            for (int i = 0; i < width; i++)
                bar[i] = i < fill ? '#' : '.';
            bar[width] = '\0';
            fprintf(stderr,
                    "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s",
                    p->epoch + 1, p->epochs, bar, (long long)p->step, (long long)p->total_steps,
                    p->mean_loss, p->lr, p->tokens_per_s, eta);
            pg->bar_open = true;
        } else if (p->step % pg->every == 0 || p->step == p->total_steps) {
            fprintf(stderr,
                    "step %lld/%lld epoch %d loss %.4f lr %.2e grad_norm %.3f %.0f tok/s "
                    "ETA %s\n",
                    (long long)p->step, (long long)p->total_steps, p->epoch + 1, p->mean_loss,
                    p->lr, p->grad_norm, p->tokens_per_s, eta);
        }
        break;
    }
    case PETL_PROGRESS_EVAL_START:
        if (pg->bar_open) fputc('\n', stderr), pg->bar_open = false;
        break;
    case PETL_PROGRESS_EPOCH:
        fprintf(stderr, "epoch %d/%d: train loss %.4f, dev", p->epoch + 1, p->epochs, p->mean_loss);
        print_metrics(p->dev);
        fprintf(stderr, "%s (%.0f s)\n", p->best ? " (best so far)" : "", p->elapsed_s);
        break;
    case PETL_PROGRESS_CHECKPOINT: break;
    }
}

/* ------------------------------------------------------------------------------ running */

/* What a run may write, settled before any work (src/outputs.c): --out and the checkpoint are
 * checked, locked against a second run, and cleared of what killed runs left. Returns 0, or the
 * exit status (2 for a path that can never be written, 1 otherwise). */
typedef struct {
    char out[PATH_MAX];  /* --out, a link resolved to its target */
    char ckpt[PATH_MAX]; /* --checkpoint, default OUT.checkpoint.safetensors */
    petl_lock *out_lock, *ckpt_lock;
} claimed_outputs;

static int claim_outputs(train_opts *o, claimed_outputs *c) {
    petl_error err = {0};
    petl_status s = petl_out_resolve(o->out, c->out, sizeof c->out, &err);
    if (s == PETL_OK && !o->ckpt) {
        size_t n = strlen(o->out);
        while (n > 1 && o->out[n - 1] == '/')
            n--;
        snprintf(c->ckpt, sizeof c->ckpt, "%.*s.checkpoint.safetensors", (int)n, o->out);
    } else if (s == PETL_OK) {
        snprintf(c->ckpt, sizeof c->ckpt, "%s", o->ckpt);
    }
    if (s == PETL_OK) s = petl_checkpoint_check(c->ckpt, &err);
    if (s != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return s == PETL_ERR_ARG ? 2 : 1;
    }
    char who[PATH_MAX + 32];
    snprintf(who, sizeof who, "petl train --out %s", o->out);
    char *report = NULL;
    petl_out_state state;
    if (petl_lock_take(c->out, who, &c->out_lock, &err) != PETL_OK ||
        petl_lock_take(c->ckpt, who, &c->ckpt_lock, &err) != PETL_OK ||
        petl_out_clean_litter(c->out, c->ckpt, &report, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    for (char *line = report, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        fprintf(stderr, "petl train: %.*s\n", (int)(nl - line), line);
    }
    free(report);
    /* after the clean-up: a restored adapter counts as one */
    if (petl_out_check(c->out, o->force, &state, &err) != PETL_OK ||
        petl_checkpoint_check(c->ckpt, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    o->to.checkpoint_path = c->ckpt;
    return 0;
}

static void release_outputs(claimed_outputs *c) {
    petl_lock_release(c->ckpt_lock);
    petl_lock_release(c->out_lock);
    c->ckpt_lock = c->out_lock = NULL;
}

/* What a run trains and evaluates on: a GLUE / generic task's files, or SQuAD windows. */
typedef struct {
    bool squad;
    petl_task task; /* GLUE / generic */
    petl_dataset *train, *dev;
    char *train_path, *dev_path;
    bool regression;
    size_t n_labels;
    cli_squad_set sq_train, sq_dev; /* squad: the questions, windows and their batchers */
    petl_squad_params sp;
    int eval_batch;
    petl_batcher *btrain, *bdev; /* GLUE: owned; squad: sq_train.b, sq_dev.b */
} train_data;

static void train_data_free(train_data *d) {
    if (!d->squad) {
        petl_batcher_free(d->btrain);
        petl_batcher_free(d->bdev);
    }
    cli_squad_free(&d->sq_train);
    cli_squad_free(&d->sq_dev);
    petl_dataset_free(d->train);
    petl_dataset_free(d->dev);
    free(d->train_path);
    free(d->dev_path);
}

/* GLUE layout: DIR/train.* and the dev file, tokenized into batchers. */
static int load_glue(const train_opts *o, const petl_tokenizer *tok, train_data *d) {
    petl_error err = {0};
    const petl_task *task = &d->task;
    const char *dev_file = petl_task_split_file(task, "dev");
    d->train_path = petl_path_join(o->data, task->train_file);
    d->dev_path = dev_file ? petl_path_join(o->data, dev_file) : NULL;
    if (!d->train_path) {
        fprintf(stderr, "petl train: out of memory\n");
        return 1;
    }
    if (petl_dataset_load(task, d->train_path, NULL, 0, &d->train, &err) != PETL_OK) goto fail;
    if (petl_dataset_count(d->train) == 0) {
        fprintf(stderr, "petl train: %s holds no examples\n", d->train_path);
        return 1;
    }
    d->regression = petl_dataset_is_regression(d->train);
    d->n_labels = petl_dataset_num_labels(d->train);
    if (!d->regression && d->n_labels < 2) {
        fprintf(stderr,
                "petl train: %s: a classification task needs at least 2 labels, found "
                "%zu\n",
                d->train_path, d->n_labels);
        return 1;
    }
    if (d->dev_path && access(d->dev_path, F_OK) == 0) {
        if (petl_dataset_load(task, d->dev_path, petl_dataset_labels(d->train), d->n_labels,
                              &d->dev, &err) != PETL_OK)
            goto fail;
    } else {
        fprintf(stderr, "petl train: no dev set at %s: keeping the last epoch\n",
                d->dev_path ? d->dev_path : "(none)");
    }
    if (petl_batcher_new(tok, o->max_len, &d->btrain, &err) != PETL_OK ||
        petl_batcher_add_dataset(d->btrain, d->train, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s: %s\n", d->train_path, err.msg);
        return 1;
    }
    if (d->dev && (petl_batcher_new(tok, o->max_len, &d->bdev, &err) != PETL_OK ||
                   petl_batcher_add_dataset(d->bdev, d->dev, &err) != PETL_OK)) {
        fprintf(stderr, "petl train: %s: %s\n", d->dev_path, err.msg);
        return 1;
    }
    return 0;
fail:
    fprintf(stderr, "petl train: %s\n", err.msg);
    return 1;
}

/* SQuAD: the training and evaluation questions (see the usage), windowed. */
static int load_squad(const train_opts *o, const petl_tokenizer *tok, train_data *d) {
    d->sp = o->sp;
    bool split;
    if (cli_squad_data("train", o->data, &d->train_path, &d->dev_path, &split)) return 1;
    const char *tr = o->train_articles ? o->train_articles : split ? "train" : "all";
    const char *ev = o->eval_articles ? o->eval_articles : split ? "eval" : "all";
    if (cli_squad_load("train", d->train_path, tr, o->max_train_q, tok, &d->sp, &d->sq_train))
        return 1;
    d->btrain = d->sq_train.b;
    if (!d->dev_path) {
        fprintf(stderr, "petl train: no %s beside %s: keeping the last epoch\n", CLI_SQUAD_DEV_FILE,
                d->train_path);
        return 0;
    }
    if (cli_squad_load("train", d->dev_path, ev, o->max_eval_q, tok, &d->sp, &d->sq_dev)) return 1;
    d->bdev = d->sq_dev.b;
    if (split && cli_squad_ranges_overlap(d->sq_train.articles, d->sq_dev.articles)) {
        fprintf(stderr,
                "petl train: %s: training articles %s and evaluation articles %s "
                "overlap; no article may be in both\n",
                d->train_path, d->sq_train.articles, d->sq_dev.articles);
        return 1;
    }
    return 0;
}

/* The trainer's dev evaluation for SQuAD: decode the dev windows, official EM / F1. */
static petl_status squad_dev_eval(petl_task_model *tm, petl_ctx *ctx, void *user,
                                  petl_metric_set *out, petl_error *err) {
    const train_data *d = user;
    return petl_squad_evaluate(tm, ctx, d->sq_dev.ds, d->sq_dev.f, d->sq_dev.b, &d->sp,
                               d->eval_batch, NULL, out, err);
}

static char *training_notes(const train_opts *o, const petl_train_result *r, const train_data *d) {
    json_t *dev = json_object();
    for (size_t i = 0; i < r->best.count; i++) {
        double v = r->best.value[i];
        json_object_set_new(dev, petl_metric_name(r->best.metric[i]),
                            isfinite(v) ? json_real(v) : json_null());
    }
    const petl_train_opts *to = &o->to;
    json_t *j =
        json_pack("{s:f, s:i, s:i, s:I, s:f, s:f, s:b, s:i, s:I, s:I, s:i, s:o, s:f}", "lr", to->lr,
                  "epochs", to->epochs, "batch", to->batch, "seed", (json_int_t)to->seed, "warmup",
                  to->warmup, "weight_decay", to->weight_decay, "bias_correction",
                  to->bias_correction, "max_len", o->max_len, "n_train",
                  (json_int_t)petl_batcher_count(d->btrain), "steps", (json_int_t)r->steps,
                  "best_epoch", r->best_epoch + 1, "dev", dev, "seconds", r->train_seconds);
    if (j && d->squad) { /* n_train counts windows; which questions they come from */
        json_object_set_new(j, "train_file", json_string(d->train_path));
        json_object_set_new(j, "train_articles", json_string(d->sq_train.articles));
        json_object_set_new(j, "train_questions",
                            json_integer((json_int_t)petl_squad_count(d->sq_train.ds)));
        if (d->sq_dev.ds) {
            json_object_set_new(j, "dev_file", json_string(d->dev_path));
            json_object_set_new(j, "dev_articles", json_string(d->sq_dev.articles));
            json_object_set_new(j, "dev_questions",
                                json_integer((json_int_t)petl_squad_count(d->sq_dev.ds)));
        }
    }
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return s;
}

/* Everything one run holds, freed by run_free. */
typedef struct {
    claimed_outputs claim;
    petl_tokenizer *tok;
    petl_model *base;
    train_data d;
    petl_tune_config tc; /* what tm was made with */
    petl_task_model *tm;
    petl_train_result res;
    petl_adapter_info info;
} train_run;

static void run_free(train_run *r) {
    release_outputs(&r->claim);
    petl_adapter_info_free(&r->info);
    petl_task_model_free(r->tm);
    train_data_free(&r->d);
    petl_model_free(r->base);
    petl_tokenizer_free(r->tok);
}

/* --task: SQuAD, or a GLUE / generic task (a bad spec is a usage error). */
static int lookup_task(const train_opts *o, train_data *d) {
    petl_error err = {0};
    *d = (train_data){.squad = !strcmp(o->task, "squad"), .eval_batch = o->to.batch};
    if (!d->squad && petl_task_lookup(o->task, &d->task, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 2;
    }
    return 0;
}

static const char *task_name(const train_data *d) {
    return d->squad ? "squad" : d->task.name;
}

/* The tokenizer and base model (in --precision), then the training and dev data. */
static int load_inputs(const train_opts *o, train_run *r) {
    petl_error err = {0};
    if (petl_tokenizer_load(o->model, &r->tok, &err) != PETL_OK ||
        petl_model_load(o->model, &r->base, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    if (cli_set_precision("train", r->base, o->precision, true)) return 1;
    int rc = cli_check_max_len("train", o->model, r->base, o->max_len);
    if (rc) return rc;
    return r->d.squad ? load_squad(o, r->tok, &r->d) : load_glue(o, r->tok, &r->d);
}

/* The task model: the library's tune config for this base with the command line's choices,
 * and a head for the data's labels. */
static int new_task_model(const train_opts *o, train_run *r) {
    const petl_config *cfg = petl_model_config(r->base);
    const train_data *d = &r->d;
    petl_tune_config tc;
    petl_tune_config_default(&tc, cfg);
    tc.tune = o->tc.tune;
    tc.top_k = o->tc.top_k;
    tc.adapter_size = o->tc.adapter_size;
    tc.adapter_act = o->tc.adapter_act;
    tc.adapter_init_sd = o->tc.adapter_init_sd;
    tc.placement = o->tc.placement;
    tc.freeze_layernorms = o->tc.freeze_layernorms;
    if (tc.freeze_layernorms && tc.tune != PETL_TUNE_ADAPTER) {
        fprintf(stderr, "petl train: --freeze-layernorms goes with --tune adapter (not %s)\n",
                petl_tune_name(tc.tune));
        return 1;
    }
    tc.head = d->squad ? PETL_HEAD_SPAN : PETL_HEAD_CLASSIFY;
    tc.num_labels = d->squad ? 2 : d->regression ? 1 : (int)d->n_labels;
    if (tc.tune == PETL_TUNE_TOP && tc.top_k > cfg->num_layers) {
        fprintf(stderr, "petl train: --tune %s:%d but the model has %d layers\n",
                petl_tune_name(tc.tune), tc.top_k, cfg->num_layers);
        return 1;
    }
    r->tc = tc;
    petl_error err = {0};
    if (petl_task_model_new(r->base, &tc, o->to.seed, &r->tm, &err) != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    if (d->squad)
        fprintf(stderr,
                "squad: %zu train questions (%zu windows, articles %s of %s), %zu dev questions "
                "(%zu windows, articles %s), span head\n",
                petl_squad_count(d->sq_train.ds), d->sq_train.f->n, d->sq_train.articles,
                d->train_path, d->sq_dev.ds ? petl_squad_count(d->sq_dev.ds) : 0,
                d->sq_dev.f ? d->sq_dev.f->n : 0, d->sq_dev.ds ? d->sq_dev.articles : "-");
    else
        fprintf(stderr, "%s: %zu train / %zu dev examples, %s, %zu labels\n", task_name(d),
                petl_dataset_count(d->train), d->dev ? petl_dataset_count(d->dev) : 0,
                d->regression ? "regression" : "classification", d->regression ? 0 : d->n_labels);
    int64_t trained = petl_task_model_trainable_count(r->tm);
    int64_t total = petl_task_model_total_count(r->tm);
    fprintf(stderr, "trainable parameters: %lld of %lld (%.2f%% of the model)\n",
            (long long)trained, (long long)total, 100.0 * (double)trained / (double)total);
    return 0;
}

/* petl_train with the options, a SQuAD run's own dev evaluation, and the progress display. */
static int train(const train_opts *o, train_run *r) {
    train_data *d = &r->d;
    petl_train_opts to = o->to;
    char key[160];
    if (d->squad) {
        /* the windows are in n_train / train_tokens already; decoding and the ranges pick the
         * best epoch */
        snprintf(key, sizeof key, "squad %d %d %d %d %d %s %s", d->sp.max_seq_len,
                 d->sp.max_query_len, d->sp.doc_stride, d->sp.n_best, d->sp.max_answer_len,
                 d->sq_train.articles, d->sq_dev.ds ? d->sq_dev.articles : "-");
        to.resume_key = key;
    }
    if (d->squad && d->bdev) {
        to.evaluate = squad_dev_eval;
        to.evaluate_user = d;
    }
    if (to.resume && access(to.checkpoint_path, F_OK) != 0)
        fprintf(stderr, "no checkpoint at %s: starting from the beginning\n", to.checkpoint_path);
    int64_t steps = (int64_t)petl_batcher_epoch_batches(petl_batcher_count(d->btrain), to.batch);
    progress pg = {.tty = isatty(2) != 0, .every = steps * to.epochs / 20};
    if (pg.every < 1) pg.every = 1;
    petl_error err = {0};
    petl_status s = petl_train(r->tm, d->squad ? NULL : &d->task, d->btrain, d->bdev, &to,
                               on_progress, &pg, &r->res, &err);
    if (pg.bar_open) fputc('\n', stderr);
    if (s != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* The adapter folder: what was trained, on what, and the training notes. */
static int save(const train_opts *o, train_run *r) {
    const train_data *d = &r->d;
    petl_adapter_info *info = &r->info;
    snprintf(info->task_name, sizeof info->task_name, "%s", task_name(d));
    snprintf(info->task_spec, sizeof info->task_spec, "%s", o->task);
    info->regression = d->regression;
    /* what petl predict / serve accept: a span head reads question + context pairs */
    info->pair_input = d->squad || d->task.col_b != PETL_COL_NONE;
    /* what petl eval checks its data files against (GLUE files: by their headers) */
    info->data_columns = d->squad || d->task.glue ? 0 : (int)petl_dataset_columns(d->train);
    info->max_len = o->max_len;
    info->tune = r->tc;
    info->tune.num_labels = petl_task_model_tune_config(r->tm)->num_labels;
    if (d->squad) {
        info->squad = d->sp;
        /* what petl eval scores by default: the held-out articles of a split file */
        snprintf(info->squad_eval_articles, sizeof info->squad_eval_articles, "%s",
                 d->sq_dev.ds && !strcmp(d->train_path, d->dev_path) ? d->sq_dev.articles : "all");
    }
    petl_base_identity_of(r->base, &info->base);
    petl_base_identity_set_tokenizer(&info->base, r->tok);
    petl_error err = {0};
    petl_status s = PETL_OK;
    if (!d->squad && !d->regression)
        s = petl_adapter_info_set_labels(info, petl_dataset_labels(d->train), d->n_labels, &err);
    if (s == PETL_OK) {
        info->training_json = training_notes(o, &r->res, d);
        s = petl_adapter_save(o->out, r->tm, info, o->force, &err);
    }
    if (s != PETL_OK) {
        fprintf(stderr, "petl train: %s\n", err.msg);
        return 1;
    }
    if (!o->keep_ckpt) unlink(o->to.checkpoint_path);
    fprintf(stderr, "saved %s (best epoch %d) in %.1f s\n", o->out, r->res.best_epoch + 1,
            r->res.train_seconds);
    return 0;
}

/* The summary on stdout: one JSON object. */
static void print_summary(const train_opts *o, const train_run *r) {
    const petl_train_result *res = &r->res;
    int64_t trained = petl_task_model_trainable_count(r->tm);
    int64_t total = petl_task_model_total_count(r->tm);
    printf("{\"task\": ");
    cli_json_string(stdout, task_name(&r->d));
    printf(", \"adapter\": ");
    cli_json_string(stdout, o->out);
    printf(", \"trainable\": %lld, \"trainable_pct\": %.4f, \"steps\": %lld, \"best_epoch\": %d",
           (long long)trained, 100.0 * (double)trained / (double)total, (long long)res->steps,
           res->best_epoch + 1);
    for (size_t i = 0; i < res->best.count; i++) {
        printf(", \"%s\": ", petl_metric_name(res->best.metric[i]));
        cli_json_number(stdout, res->best.value[i]);
    }
    if (res->stopped_step > 0)
        printf(", \"stopped_at_step\": %lld, \"stopped_train_s\": %.1f",
               (long long)res->stopped_step, res->stopped_train_s);
    printf(", \"seconds\": %.1f}\n", res->train_seconds);
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    cli_set_threads(o.threads);
    static train_run r; /* static: the claim's two PATH_MAX buffers */
    if ((rc = lookup_task(&o, &r.d)) == 0 && (rc = claim_outputs(&o, &r.claim)) == 0 &&
        (rc = load_inputs(&o, &r)) == 0 && (rc = new_task_model(&o, &r)) == 0 &&
        (rc = train(&o, &r)) == 0 && (rc = save(&o, &r)) == 0)
        print_summary(&o, &r);
    run_free(&r);
    return rc;
}
