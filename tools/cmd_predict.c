/* petl predict: JSON lines of text in, one JSON line of prediction out per input line, in
 * order. Lines are read in chunks, each run in length-sorted batches. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 1024 /* lines tokenized and run together (sorted by length inside the chunk) */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: petl predict --adapter ADAPTER_DIR [OPTIONS] < input.jsonl > output.jsonl\n\n"
        "Reads one JSON object per line, {\"text\": ...} or {\"text_a\": ..., \"text_b\": ...},\n"
        "and writes per line {\"label\": \"...\", \"scores\": [...]} (softmax probabilities in\n"
        "the adapter's label order) or, for a regression adapter, {\"score\": x}.\n\n"
        "A SQuAD adapter (petl train --task squad) reads {\"question\": ..., \"context\": ...}\n"
        "(optional \"id\": string or integer, echoed) and writes {\"id\": ..., \"answer\": text,\n"
        "\"start\": s, \"end\": e, \"score\": x}: the answer is context[s:e] with s, e in code\n"
        "points (Python str indices, SQuAD's answer_start convention), the score its start +\n"
        "end logit; contexts longer than a window are read in overlapping windows. With no\n"
        "valid span: \"answer\": \"\" and nulls. --max-len is then the window length.\n\n"
        "  --model DIR      base model folder (default: $PETL_MODEL or models/all-MiniLM-L6-v2)\n"
        "  --adapter DIR    adapter folder written by petl train\n"
        "  --batch N        lines per batch (64)\n"
        "  --max-len N      truncation (default: the adapter's training --max-len)\n"
        "  --threads N      OpenMP / OpenBLAS threads\n" CLI_PRECISION_HELP
        "  -h, --help       this help\n");
}

/* Runs the chunk and writes its lines. */
static int flush_chunk(cli_adapter *ad, petl_batcher *b, int batch, float *logits) {
    size_t n = petl_batcher_count(b);
    if (n == 0) return 0;
    petl_error err = {0};
    if (petl_predict_all(ad->tm, NULL, b, batch, &(petl_predictions){.logits = logits}, &err) !=
        PETL_OK) {
        fprintf(stderr, "petl predict: %s\n", err.msg);
        return 1;
    }
    const size_t C = ad->info.regression ? 1 : ad->info.n_labels;
    for (size_t i = 0; i < n; i++) {
        const float *l = logits + i * C;
        if (ad->info.regression) {
            printf("{\"score\": ");
            cli_json_number(stdout, l[0]);
            printf("}\n");
            continue;
        }
        /* Softmax in double, shifted by the max for range. */
        size_t best = 0;
        for (size_t c = 1; c < C; c++)
            if (l[c] > l[best]) best = c;
        double sum = 0;
        for (size_t c = 0; c < C; c++)
            sum += exp((double)l[c] - (double)l[best]);
        printf("{\"label\": ");
        cli_json_string(stdout, ad->info.labels[best]);
        printf(", \"scores\": [");
        for (size_t c = 0; c < C; c++) {
            if (c) printf(", ");
            cli_json_number(stdout, exp((double)l[c] - (double)l[best]) / sum);
        }
        printf("]}\n");
    }
    petl_batcher_clear(b);
    /* A full disk stops the run here, not after the rest of the input. */
    return ferror(stdout) ? cli_check_stdout("predict") : 0;
}

int cmd_predict(int argc, char **argv) {
    const char *precision = NULL;
    const char *model = cli_default_model(), *adapter = NULL;
    long batch = 64, max_len = 0, threads = 0;
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &model),
        CLI_OPT_STR("--adapter", &adapter),
        CLI_OPT_LONG("--batch", &batch, 1, 1 << 16),
        CLI_OPT_LONG("--max-len", &max_len, 3, 1 << 20),
        CLI_OPT_LONG("--threads", &threads, 1, 1024),
        CLI_OPT_PRECISION(&precision),
    };
    int rc = cli_parse_options("predict", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!adapter) {
        fprintf(stderr, "petl predict: --adapter is required (petl predict --help)\n");
        return 2;
    }
    cli_set_threads((int)threads);
    cli_adapter ad;
    if (cli_load_adapter("predict", model, adapter, precision, &ad)) return 1;
    if (max_len && (rc = cli_check_max_len("predict", model, ad.base, max_len)) != 0) {
        cli_adapter_free(&ad);
        return rc;
    }
    if (ad.info.tune.head == PETL_HEAD_SPAN) {
        int src = cli_squad_predict(&ad, (int)batch, (int)max_len);
        cli_adapter_free(&ad);
        return src;
    }
    rc = 1;
    petl_error err = {0};
    petl_batcher *b = NULL;
    const size_t C = ad.info.regression ? 1 : ad.info.n_labels;
    float *logits = malloc(CHUNK * C * sizeof *logits);
    char *line = NULL, errbuf[512];
    size_t cap = 0;
    if (!logits) {
        fprintf(stderr, "petl predict: out of memory\n");
        goto done;
    }
    if (petl_batcher_new(ad.tok, max_len ? (int)max_len : ad.info.max_len, &b, &err) != PETL_OK) {
        fprintf(stderr, "petl predict: %s\n", err.msg);
        goto done;
    }
    rc = 0;
    for (long lineno = 1;; lineno++) {
        cli_text t;
        int got = cli_read_text_line(stdin, lineno, &line, &cap, &t, errbuf, sizeof errbuf);
        if (got == 0) break;
        if (got < 0) {
            /* The lines before it still get their output, in order. */
            rc = flush_chunk(&ad, b, (int)batch, logits);
            if (rc == 0) fprintf(stderr, "petl predict: %s\n", errbuf);
            rc = 1;
            break;
        }
        if ((t.b != NULL) != ad.info.pair_input) {
            /* scored anyway, the other shape would give confident nonsense */
            cli_text_free(&t);
            rc = flush_chunk(&ad, b, (int)batch, logits);
            if (rc == 0)
                fprintf(stderr,
                        "petl predict: line %ld: %s, but the adapter (task %s) was trained on "
                        "%s\n",
                        lineno, ad.info.pair_input ? "a single text" : "a text pair (text_b)",
                        ad.info.task_spec,
                        ad.info.pair_input ? "text pairs: give text_a and text_b"
                                           : "single texts: give text");
            rc = 1;
            break;
        }
        petl_status st = petl_batcher_add(b, t.a, t.len_a, t.b, t.len_b, -1, 0, &err);
        cli_text_free(&t);
        if (st != PETL_OK) {
            rc = flush_chunk(&ad, b, (int)batch, logits);
            if (rc == 0) fprintf(stderr, "petl predict: line %ld: %s\n", lineno, err.msg);
            rc = 1;
            break;
        }
        if (petl_batcher_count(b) == CHUNK && (rc = flush_chunk(&ad, b, (int)batch, logits))) break;
    }
    if (rc == 0) rc = flush_chunk(&ad, b, (int)batch, logits);
    if (ferror(stdin)) {
        fprintf(stderr, "petl predict: error reading the input: %s\n", strerror(errno));
        rc = 1;
    }
    if (cli_check_stdout("predict")) rc = 1;
done:
    free(line);
    free(logits);
    petl_batcher_free(b);
    cli_adapter_free(&ad);
    return rc;
}
