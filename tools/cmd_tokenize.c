/* petl tokenize: JSON lines of text in, JSON lines of input ids and token types out. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: petl tokenize [--model DIR] [--max-len N] [--tokens]\n\n"
            "Reads JSON lines from stdin, {\"text\": ...} or {\"text_a\": ..., \"text_b\": ...},\n"
            "and writes one line per input: {\"input_ids\": [...], \"token_type_ids\": [...]},\n"
            "as BertTokenizerFast(text_a, text_b, truncation=True, max_length=N) does.\n\n"
            "  --model DIR    model folder with vocab.txt (default: %s)\n"
            "  --max-len N    truncate to N tokens with the special tokens, longest first\n"
            "                 (default 128; 0: no truncation)\n"
            "  --tokens       also write the token strings as \"tokens\"\n"
            "  --help         this text\n\n"
            "Stops at the first bad line (exit status 1) after writing the lines before it.\n",
            cli_default_model());
}

/* Writes s as a JSON string (UTF-8 passed through; quotes, backslashes and control
 * characters escaped). */
static void put_json_string(FILE *out, const char *s) {
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            putc('\\', out);
            putc(*p, out);
        } else if (*p < 0x20) {
            fprintf(out, "\\u%04x", *p);
        } else {
            putc(*p, out);
        }
    }
    putc('"', out);
}

static void put_ids(FILE *out, const char *key, const int32_t *v, int n) {
    fprintf(out, "\"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(out, i ? ", %d" : "%d", v[i]);
    putc(']', out);
}

static void write_encoding(FILE *out, const petl_tokenizer *tok, const petl_encoding *e,
                           bool tokens) {
    putc('{', out);
    put_ids(out, "input_ids", e->ids, e->len);
    fputs(", ", out);
    put_ids(out, "token_type_ids", e->type_ids, e->len);
    if (tokens) {
        fputs(", \"tokens\": [", out);
        for (int i = 0; i < e->len; i++) {
            if (i) fputs(", ", out);
            put_json_string(out, petl_tokenizer_id_to_token(tok, e->ids[i]));
        }
        putc(']', out);
    }
    fputs("}\n", out);
}

typedef struct {
    const char *model;
    int max_len;
    bool tokens;
} options;

/* Returns CLI_GO_ON, or the exit status (0 for --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, options *o) {
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_INT("--max-len", &o->max_len, 0, 1000000000),
        CLI_OPT_FLAG("--tokens", &o->tokens),
    };
    return cli_parse_options("tokenize", argc, argv, opts, CLI_N_OPTS(opts), usage);
}

int cmd_tokenize(int argc, char **argv) {
    options o = {cli_default_model(), 128, false};
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    petl_error err = {0};
    petl_tokenizer *tok = NULL;
    if (petl_tokenizer_load(o.model, &tok, &err) != PETL_OK) {
        fprintf(stderr, "petl tokenize: %s\n", err.msg);
        return 1;
    }
    /* Fully buffered output: one write per 64 kB instead of one per line. */
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    petl_encoding enc = {0};
    char *line = NULL, msg[512];
    size_t cap = 0;
    cli_text t;
    rc = 0;
    for (long lineno = 1;; lineno++) {
        int r = cli_read_text_line(stdin, lineno, &line, &cap, &t, msg, sizeof msg);
        if (r == 0) break;
        if (r < 0) {
            fprintf(stderr, "petl tokenize: %s\n", msg);
            rc = 1;
            break;
        }
        petl_status st = petl_tokenize(tok, t.a, t.len_a, t.b, t.len_b, o.max_len, &enc, &err);
        cli_text_free(&t);
        if (st != PETL_OK) {
            fprintf(stderr, "petl tokenize: line %ld: %s\n", lineno, err.msg);
            rc = 1;
            break;
        }
        write_encoding(stdout, tok, &enc, o.tokens);
        if (ferror(stdout)) break; /* a full disk: reported below, not after all the input */
    }
    if (cli_check_stdout("tokenize")) rc = 1;
    free(line);
    petl_encoding_free(&enc);
    petl_tokenizer_free(tok);
    return rc;
}
