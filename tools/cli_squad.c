/* SQuAD v1.1 in the CLI: the data behind `petl train --task squad`, and `petl eval` /
 * `petl predict` for an adapter with a span head. The math is in the library (src/squad.c:
 * reading, windows, decoding, EM / F1; src/trainer.c: petl_squad_evaluate). */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PREDICT_CHUNK 256 /* input lines windowed and run together */

int cli_squad_load(const char *cmd, const char *path, const char *range, long max_questions,
                   const petl_tokenizer *tok, const petl_squad_params *p, cli_squad_set *out) {
    memset(out, 0, sizeof *out);
    petl_error err = {0};
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    o.max_questions = max_questions;
    if (petl_squad_parse_range(range, &o, &err) != PETL_OK ||
        petl_squad_load(path, &o, &out->ds, &err) != PETL_OK)
        goto fail;
    const size_t na = petl_squad_num_articles(out->ds);
    const long long e =
        o.article_end < 0 || (size_t)o.article_end > na ? (long long)na : (long long)o.article_end;
    snprintf(out->articles, sizeof out->articles, "%lld:%lld", (long long)o.article_begin, e);
    if (petl_squad_count(out->ds) == 0) {
        fprintf(stderr, "petl %s: %s: no questions in articles %s (the file has %zu articles)\n",
                cmd, path, range, na);
        cli_squad_free(out);
        return 1;
    }
    if (petl_squad_featurize(out->ds, tok, p, &out->f, &err) != PETL_OK ||
        petl_batcher_new(tok, p->max_seq_len, &out->b, &err) != PETL_OK)
        goto fail;
    const petl_squad_features *f = out->f;
    for (size_t i = 0; i < f->n; i++) {
        const size_t at = i * (size_t)f->max_seq_len;
        if (petl_batcher_add_encoded(out->b, f->ids + at, f->type_ids + at, f->lengths[i],
                                     f->start_pos[i], f->end_pos[i], &err) != PETL_OK)
            goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "petl %s: %s\n", cmd, err.msg);
    cli_squad_free(out);
    return 1;
}

void cli_squad_free(cli_squad_set *s) {
    petl_batcher_free(s->b);
    petl_squad_features_free(s->f);
    petl_squad_free(s->ds);
    memset(s, 0, sizeof *s);
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

int cli_squad_data(const char *cmd, const char *data, char **train, char **dev, bool *split) {
    *train = *dev = NULL;
    *split = false;
    if (!is_dir(data)) { /* a file (a missing one is reported by the reader, with its name) */
        *train = strdup(data);
        *dev = strdup(data);
        *split = true;
    } else {
        char *t = petl_path_join(data, CLI_SQUAD_TRAIN_FILE);
        char *d = petl_path_join(data, CLI_SQUAD_DEV_FILE);
        if (t && d && exists(t)) {
            *train = t;
            *dev = exists(d) ? d : NULL;
            if (!*dev) free(d);
            return 0;
        }
        free(t);
        if (d && !exists(d)) {
            fprintf(stderr, "petl %s: %s holds neither %s nor %s\n", cmd, data,
                    CLI_SQUAD_TRAIN_FILE, CLI_SQUAD_DEV_FILE);
            free(d);
            return 1;
        }
        *train = d ? strdup(d) : NULL;
        *dev = d;
        *split = true;
    }
    if (!*train || !*dev) {
        free(*train);
        free(*dev);
        *train = *dev = NULL;
        fprintf(stderr, "petl %s: out of memory\n", cmd);
        return 1;
    }
    return 0;
}

bool cli_squad_ranges_overlap(const char *a, const char *b) {
    long long a0, a1, b0, b1;
    if (sscanf(a, "%lld:%lld", &a0, &a1) != 2 || sscanf(b, "%lld:%lld", &b0, &b1) != 2)
        return true; /* unknown: assume the worst */
    return a0 < b1 && b0 < a1;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

/* ----------------------------------------------------------------------------------- eval */

int cli_squad_eval(cli_adapter *ad, const char *data, const char *articles, long max_questions,
                   int batch, int max_len) {
    char *path = is_dir(data) ? petl_path_join(data, CLI_SQUAD_DEV_FILE) : strdup(data);
    if (!path) {
        fprintf(stderr, "petl eval: out of memory\n");
        return 1;
    }
    /* By default the articles the adapter held out in training (38:48 of the dev file when it
     * was trained on the dev file's first 38). */
    if (!articles)
        articles = ad->info.squad_eval_articles[0] ? ad->info.squad_eval_articles : "all";
    petl_squad_params p = ad->info.squad;
    if (max_len) p.max_seq_len = max_len;
    cli_squad_set set;
    int rc = 1;
    if (cli_squad_load("eval", path, articles, max_questions, ad->tok, &p, &set)) goto done;
    fprintf(stderr, "squad: %zu questions (%zu windows) of %s, articles %s\n",
            petl_squad_count(set.ds), set.f->n, path, set.articles);
    petl_error err = {0};
    petl_metric_set m;
    if (petl_squad_evaluate(ad->tm, NULL, set.ds, set.f, set.b, &p, batch, NULL, &m, &err) !=
        PETL_OK) {
        fprintf(stderr, "petl eval: %s\n", err.msg);
        goto done;
    }
    printf("{\"task\": \"squad\", \"split\": ");
    cli_json_string(stdout, base_name(path));
    printf(", \"articles\": ");
    cli_json_string(stdout, set.articles);
    printf(", \"n\": %zu", petl_squad_count(set.ds));
    for (size_t i = 0; i < m.count; i++) {
        printf(", \"%s\": ", petl_metric_name(m.metric[i]));
        cli_json_number(stdout, m.value[i]);
    }
    printf("}\n");
    rc = cli_check_stdout("eval");
done:
    cli_squad_free(&set);
    free(path);
    return rc;
}

/* -------------------------------------------------------------------------------- predict */

/* Input lines of one chunk: a SQuAD document of one article per line (title "line N", one
 * paragraph, one question without answers), and each line's "id" value (or NULL). */
typedef struct {
    json_t *data; /* the "data" array */
    json_t *ids[PREDICT_CHUNK];
    size_t n;
} chunk;

static void chunk_clear(chunk *c) {
    json_array_clear(c->data);
    for (size_t i = 0; i < c->n; i++)
        json_decref(c->ids[i]);
    c->n = 0;
}

/* Checks one input line and appends it to the chunk; 0, or -1 with a message naming the line. */
static int add_line(chunk *c, const char *line, size_t len, long lineno, char *msg, size_t cap) {
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        snprintf(msg, cap, "line %ld, column %d: invalid JSON: %s", lineno, je.column, je.text);
        return -1;
    }
    json_t *q = json_object_get(o, "question"), *ctx = json_object_get(o, "context");
    json_t *id = json_object_get(o, "id");
    const char *why = NULL;
    if (!json_is_object(o))
        why = "expected a JSON object {\"question\": ..., \"context\": ...}";
    else if (!json_is_string(q))
        why = "\"question\" is missing or not a string";
    else if (!json_is_string(ctx))
        why = "\"context\" is missing or not a string";
    else if (id && !json_is_string(id) && !json_is_integer(id))
        why = "\"id\" must be a string or an integer";
    else if (petl_squad_is_blank(json_string_value(ctx), json_string_length(ctx)))
        why = "empty context";
    else if (petl_squad_is_blank(json_string_value(q), json_string_length(q)))
        why = "empty question";
    if (why) {
        snprintf(msg, cap, "line %ld: %s", lineno, why);
        json_decref(o);
        return -1;
    }
    char title[32], qid[32];
    snprintf(title, sizeof title, "line %ld", lineno);
    snprintf(qid, sizeof qid, "%ld", lineno);
    json_t *art = json_pack("{s:s, s:[{s:O, s:[{s:s, s:O, s:[]}]}]}", "title", title,
                            "paragraphs", "context", ctx, "qas", "id", qid, "question", q,
                            "answers");
    if (!art || json_array_append_new(c->data, art) != 0) {
        snprintf(msg, cap, "line %ld: out of memory", lineno);
        json_decref(o);
        return -1;
    }
    c->ids[c->n++] = id ? json_incref(id) : NULL;
    json_decref(o);
    return 0;
}

/* Runs the chunk's questions and prints one line per question, in order. */
static int flush_chunk(cli_adapter *ad, chunk *c, const petl_squad_params *p, int batch) {
    if (c->n == 0) return 0;
    petl_error err = {0};
    json_t *doc = json_pack("{s:s, s:O}", "version", "1.1", "data", c->data);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    o.allow_unanswered = true;
    petl_squad *ds = NULL;
    petl_squad_features *f = NULL;
    petl_batcher *b = NULL;
    petl_squad_prediction *preds = calloc(c->n, sizeof *preds);
    float *logits = NULL;
    int rc = 1;
    if (!text || !preds) {
        fprintf(stderr, "petl predict: out of memory\n");
        goto done;
    }
    if (petl_squad_parse(text, strlen(text), "input", &o, &ds, &err) != PETL_OK ||
        petl_squad_featurize(ds, ad->tok, p, &f, &err) != PETL_OK ||
        petl_batcher_new(ad->tok, p->max_seq_len, &b, &err) != PETL_OK)
        goto fail;
    for (size_t i = 0; i < f->n; i++) {
        const size_t at = i * (size_t)f->max_seq_len;
        if (petl_batcher_add_encoded(b, f->ids + at, f->type_ids + at, f->lengths[i], -1, -1,
                                     &err) != PETL_OK)
            goto fail;
    }
    const size_t cells = f->n * (size_t)f->max_seq_len;
    logits = malloc(2 * cells * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "petl predict: out of memory for %zu windows\n", f->n);
        goto done;
    }
    if (petl_predict_all(
            ad->tm, NULL, b, batch,
            &(petl_predictions){.start = logits, .end = logits + cells, .seq = f->max_seq_len},
            &err) != PETL_OK ||
        petl_squad_decode(ds, f, logits, logits + cells, p, preds, &err) != PETL_OK)
        goto fail;
    for (size_t i = 0; i < c->n; i++) {
        const petl_squad_prediction *pr = &preds[i];
        printf("{");
        if (c->ids[i]) {
            char *id = json_dumps(c->ids[i], JSON_ENCODE_ANY);
            printf("\"id\": %s, ", id ? id : "null");
            free(id);
        }
        /* the answer text is the context's bytes begin..end: valid UTF-8 on token bounds */
        char *answer = strndup(pr->text, pr->len);
        if (!answer) {
            fprintf(stderr, "petl predict: out of memory\n");
            goto done;
        }
        printf("\"answer\": ");
        cli_json_string(stdout, answer);
        free(answer);
        if (pr->found)
            printf(", \"start\": %lld, \"end\": %lld, \"score\": ", (long long)pr->char_begin,
                   (long long)pr->char_end);
        else
            printf(", \"start\": null, \"end\": null, \"score\": ");
        cli_json_number(stdout, pr->score);
        printf("}\n");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "petl predict: %s\n", err.msg);
done:
    free(logits);
    free(preds);
    petl_batcher_free(b);
    petl_squad_features_free(f);
    petl_squad_free(ds);
    free(text);
    chunk_clear(c);
    /* A full disk stops the run here, not after the rest of the input. */
    return rc == 0 && ferror(stdout) ? cli_check_stdout("predict") : rc;
}

int cli_squad_predict(cli_adapter *ad, int batch, int max_len) {
    petl_squad_params p = ad->info.squad;
    if (max_len) p.max_seq_len = max_len;
    chunk c = {json_array(), {NULL}, 0};
    if (!c.data) {
        fprintf(stderr, "petl predict: out of memory\n");
        return 1;
    }
    char *line = NULL, msg[512];
    size_t cap = 0;
    int rc = 0;
    for (long lineno = 1;; lineno++) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (add_line(&c, line, (size_t)n, lineno, msg, sizeof msg) != 0) {
            /* The lines before it still get their output, in order. */
            rc = flush_chunk(ad, &c, &p, batch);
            if (rc == 0) fprintf(stderr, "petl predict: %s\n", msg);
            rc = 1;
            break;
        }
        if (c.n == PREDICT_CHUNK && (rc = flush_chunk(ad, &c, &p, batch))) break;
    }
    if (rc == 0) rc = flush_chunk(ad, &c, &p, batch);
    if (ferror(stdin)) {
        fprintf(stderr, "petl predict: error reading the input: %s\n", strerror(errno));
        rc = 1;
    }
    if (cli_check_stdout("predict")) rc = 1;
    chunk_clear(&c);
    json_decref(c.data);
    free(line);
    return rc;
}
