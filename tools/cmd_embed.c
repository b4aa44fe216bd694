/* petl embed: JSON lines of text in, one JSON line of vectors out per input line, in order.
 *
 * Lines are tokenized as they are read and run through the encoder in padded batches of
 * --batch lines. Floats are written with 9 significant digits (enough for a float to read back
 * bit for bit) by a formatter of our own: printf("%.9g") costs more than the encoder's own time
 * per vector element at small batch sizes. */
#include "cli.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: petl embed [OPTIONS] < input.jsonl > output.jsonl\n\n"
            "Reads one JSON object per line, {\"text\": ...} or {\"text_a\": ..., \"text_b\": "
            "...},\n"
            "and writes per line {\"pooler_output\": [...], \"cls\": [...], \"mean\": [...]}:\n"
            "the pooler output tanh(W h_[CLS] + b), the last hidden state of [CLS], and the mean\n"
            "of the last hidden states over the tokens.\n\n"
            "options:\n"
            "  --model DIR      model folder (config.json, model.safetensors, vocab.txt)\n"
            "                   (default: $PETL_MODEL or models/all-MiniLM-L6-v2)\n"
            "  --max-len N      truncate inputs to N tokens, special tokens included (128)\n"
            "  --batch N        lines per encoder batch (32)\n"
            "  --threads N      OpenMP / OpenBLAS threads (default: OMP_NUM_THREADS or all)\n"
            "  --precision P    fp32 (default) or bf16: the linear layers with bf16 inputs and\n"
            "                   fp32 sums, about twice as fast on AVX512-BF16 CPUs; outputs\n"
            "                   differ from fp32 by ~1e-2 (docs/performance.md)\n"
            "  --output LIST    comma-separated subset of pooler,cls,mean (all three)\n"
            "  -h, --help       this help\n");
}

/* ------------------------------------------------------------------------- float output */

/* Writes f like printf("%.9g") into buf (at least 24 bytes); returns the length. 9 significant
 * digits from double arithmetic: the product below is off by ~1e-16 relative, far inside the
 * half-ulp of a float (>= 3e-8 relative), so the digits read back to the same float.
 * nearbyint rounds exact ties to even, as glibc's printf does. */
static int fmt_float(char *buf, float f) {
    static double p10[121]; /* p10[i] = 10^(i - 60): floats need 10^-30 .. 10^54 below */
    static int init;
    if (!init) {
        for (int i = 0; i < 121; i++)
            p10[i] = pow(10.0, i - 60);
        init = 1;
    }
    char *p = buf;
    if (isnan(f) || isinf(f)) { /* JSON has no NaN or infinity */
        memcpy(buf, "null", 4);
        return 4;
    }
    if (signbit(f)) *p++ = '-';
    double d = fabs((double)f);
    if (d == 0.0) {
        *p++ = '0';
        return (int)(p - buf);
    }
    int e = (int)floor(log10(d));
    long long m = (long long)nearbyint(d * p10[8 - e + 60]);
    if (m >= 1000000000LL) { /* log10 rounded up, or 9.999999995 rounded to 10 */
        e++;
        m = (long long)nearbyint(d * p10[8 - e + 60]);
    } else if (m < 100000000LL) {
        e--;
        m = (long long)nearbyint(d * p10[8 - e + 60]);
    }
    if (m >= 1000000000LL) { /* 999999999.5 rounded up: 1.00000000e(e+1) */
        m /= 10;
        e++;
    }
    char dig[9];
    for (int i = 8; i >= 0; i--, m /= 10)
        dig[i] = (char)('0' + m % 10);
    int nd = 9;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (e >= -4 && e < 9) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++)
                *p++ = i < nd ? dig[i] : '0';
            if (nd > e + 1) {
                *p++ = '.';
                for (int i = e + 1; i < nd; i++)
                    *p++ = dig[i];
            }
        } else {
            *p++ = '0';
            *p++ = '.';
            for (int i = 0; i < -e - 1; i++)
                *p++ = '0';
            for (int i = 0; i < nd; i++)
                *p++ = dig[i];
        }
    } else {
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            for (int i = 1; i < nd; i++)
                *p++ = dig[i];
        }
        *p++ = 'e';
        *p++ = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae >= 100) *p++ = (char)('0' + ae / 100);
        *p++ = (char)('0' + ae / 10 % 10);
        *p++ = (char)('0' + ae % 10);
    }
    return (int)(p - buf);
}

/* Appends `"key": [v0, v1, ...]` to buf (room for 24 + n * 26 bytes); returns the end. */
static char *put_vec(char *p, const char *key, const float *v, int n) {
    p += sprintf(p, "\"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (i) *p++ = ',', *p++ = ' ';
        p += fmt_float(p, v[i]);
    }
    *p++ = ']';
    return p;
}

/* ------------------------------------------------------------------------------ options */

typedef struct {
    const char *model;
    int max_len, batch, threads;
    bool pooler, cls, mean;
    const char *precision; /* NULL: fp32 */
} embed_opts;

/* --output: CLI_CUSTOM of the option table, dst the embed_opts. */
static int parse_outputs(const char *cmd, const char *opt, const char *s, void *dst) {
    embed_opts *o = dst;
    (void)opt;
    o->pooler = o->cls = o->mean = false;
    char buf[256];
    if (!s || strlen(s) >= sizeof buf) goto bad;
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "pooler") || !strcmp(tok, "pooler_output"))
            o->pooler = true;
        else if (!strcmp(tok, "cls"))
            o->cls = true;
        else if (!strcmp(tok, "mean"))
            o->mean = true;
        else
            goto bad;
    }
    if (o->pooler || o->cls || o->mean) return 0;
bad:
    fprintf(stderr,
            "petl %s: --output takes a comma-separated list of pooler, cls, mean; "
            "got '%s'\n",
            cmd, s ? s : "");
    return -1;
}

/* Returns CLI_GO_ON, or the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, embed_opts *o) {
    *o = (embed_opts){cli_default_model(), 128, 32, 0, true, true, true, NULL};
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_INT("--max-len", &o->max_len, 3, 1 << 20),
        CLI_OPT_INT("--batch", &o->batch, 1, 1 << 16),
        CLI_OPT_INT("--threads", &o->threads, 1, 1024),
        CLI_OPT_PRECISION(&o->precision),
        CLI_OPT_CUSTOM("--output", parse_outputs, o),
    };
    return cli_parse_options("embed", argc, argv, opts, CLI_N_OPTS(opts), usage);
}

/* ------------------------------------------------------------------------------ running */

typedef struct {
    const embed_opts *o;
    const petl_model *m;
    petl_ctx *ctx;
    int32_t pad_id;
    int hidden;
    petl_encoding *enc;         /* [batch] tokenized lines waiting to be run */
    int32_t *ids, *types;       /* [batch, max_len] */
    int *lens;                  /* [batch] */
    float *pooled, *cls, *mean; /* [batch, hidden] */
    char *line;                 /* one output line */
} embedder;

/* Runs the n pending lines and writes their output lines. first_line names them in errors. */
static int flush_batch(embedder *e, int n, long first_line) {
    if (n == 0) return 0;
    int seq = 0;
    for (int r = 0; r < n; r++)
        seq = e->enc[r].len > seq ? e->enc[r].len : seq;
    for (int r = 0; r < n; r++) {
        const petl_encoding *en = &e->enc[r];
        int32_t *ids = e->ids + (size_t)r * seq, *types = e->types + (size_t)r * seq;
        memcpy(ids, en->ids, (size_t)en->len * sizeof *ids);
        memcpy(types, en->type_ids, (size_t)en->len * sizeof *types);
        for (int p = en->len; p < seq; p++)
            ids[p] = e->pad_id, types[p] = 0;
        e->lens[r] = en->len;
    }
    petl_batch b = {n, seq, e->ids, e->types, e->lens};
    petl_error err = {0};
    if (petl_encode(e->ctx, &b, NULL, e->o->pooler ? e->pooled : NULL, e->o->cls ? e->cls : NULL,
                    e->o->mean ? e->mean : NULL, &err) != PETL_OK) {
        fprintf(stderr, "petl embed: lines %ld..%ld: %s\n", first_line, first_line + n - 1,
                err.msg);
        return 1;
    }
    const int H = e->hidden;
    for (int r = 0; r < n; r++) {
        char *p = e->line;
        *p++ = '{';
        if (e->o->pooler) p = put_vec(p, "pooler_output", e->pooled + (size_t)r * H, H);
        if (e->o->cls) {
            if (p[-1] != '{') *p++ = ',', *p++ = ' ';
            p = put_vec(p, "cls", e->cls + (size_t)r * H, H);
        }
        if (e->o->mean) {
            if (p[-1] != '{') *p++ = ',', *p++ = ' ';
            p = put_vec(p, "mean", e->mean + (size_t)r * H, H);
        }
        *p++ = '}';
        *p++ = '\n';
        fwrite(e->line, 1, (size_t)(p - e->line), stdout);
    }
    /* A full disk stops the run here, not after the rest of the input. */
    return ferror(stdout) ? cli_check_stdout("embed") : 0;
}

static int run(const embed_opts *o, const petl_model *m, const petl_tokenizer *tok, petl_ctx *ctx) {
    embedder e = {.o = o,
                  .m = m,
                  .ctx = ctx,
                  .pad_id = petl_tokenizer_pad_id(tok),
                  .hidden = petl_model_config(m)->hidden_size};
    const size_t B = (size_t)o->batch, L = (size_t)o->max_len, H = (size_t)e.hidden;
    e.enc = calloc(B, sizeof *e.enc);
    e.ids = malloc(B * L * sizeof *e.ids);
    e.types = malloc(B * L * sizeof *e.types);
    e.lens = malloc(B * sizeof *e.lens);
    e.pooled = malloc(B * H * sizeof(float));
    e.cls = malloc(B * H * sizeof(float));
    e.mean = malloc(B * H * sizeof(float));
    e.line = malloc(64 + 3 * (32 + H * 26));
    int rc = 0;
    if (!e.enc || !e.ids || !e.types || !e.lens || !e.pooled || !e.cls || !e.mean || !e.line) {
        fprintf(stderr, "petl embed: out of memory\n");
        rc = 1;
        goto done;
    }
    char *buf = NULL, errbuf[512];
    size_t cap = 0;
    long lineno = 0, first = 1;
    int n = 0;
    for (;;) {
        cli_text t;
        int got = cli_read_text_line(stdin, ++lineno, &buf, &cap, &t, errbuf, sizeof errbuf);
        if (got == 0) break;
        if (got < 0) {
            /* The lines before it still get their output, in order. */
            rc = flush_batch(&e, n, first);
            if (rc == 0) fprintf(stderr, "petl embed: %s\n", errbuf);
            rc = 1;
            break;
        }
        petl_error err = {0};
        petl_status st =
            petl_tokenize(tok, t.a, t.len_a, t.b, t.len_b, o->max_len, &e.enc[n], &err);
        cli_text_free(&t);
        if (st != PETL_OK) {
            rc = flush_batch(&e, n, first);
            if (rc == 0) fprintf(stderr, "petl embed: line %ld: %s\n", lineno, err.msg);
            rc = 1;
            break;
        }
        if (++n == o->batch) {
            if ((rc = flush_batch(&e, n, first)) != 0) break;
            n = 0;
            first = lineno + 1;
        }
    }
    if (rc == 0) rc = flush_batch(&e, n, first);
    free(buf);
    if (ferror(stdin)) {
        fprintf(stderr, "petl embed: error reading the input: %s\n", strerror(errno));
        rc = 1;
    }
done:
    if (e.enc)
        for (size_t i = 0; i < B; i++)
            petl_encoding_free(&e.enc[i]);
    free(e.enc);
    free(e.ids);
    free(e.types);
    free(e.lens);
    free(e.pooled);
    free(e.cls);
    free(e.mean);
    free(e.line);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    embed_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    if (o.threads > 0) {
        /* Before the context exists: it sizes its attention scratch for this many threads. */
        omp_set_num_threads(o.threads);
        openblas_set_num_threads(o.threads);
    }
    petl_error err = {0};
    petl_tokenizer *tok = NULL;
    petl_model *m = NULL;
    petl_ctx *ctx = NULL;
    rc = 1;
    if (petl_tokenizer_load(o.model, &tok, &err) != PETL_OK ||
        petl_model_load(o.model, &m, &err) != PETL_OK) {
        fprintf(stderr, "petl embed: %s\n", err.msg);
        goto done;
    }
    if ((rc = cli_check_max_len("embed", o.model, m, o.max_len)) != 0) goto done;
    rc = 1;
    if (cli_set_precision("embed", m, o.precision, false)) goto done;
    if (petl_ctx_new(m, o.batch, o.max_len, &ctx, &err) != PETL_OK) {
        fprintf(stderr, "petl embed: %s\n", err.msg);
        goto done;
    }
    if (o.pooler && !petl_model_has_pooler(m)) {
        fprintf(stderr, "petl embed: %s has no pooler; use --output cls,mean\n", o.model);
        goto done;
    }
    /* A large stdout buffer: output lines are ~10 kB each. */
    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    rc = run(&o, m, tok, ctx);
    if (cli_check_stdout("embed")) rc = 1;
done:
    petl_ctx_free(ctx);
    petl_model_free(m);
    petl_tokenizer_free(tok);
    return rc;
}
