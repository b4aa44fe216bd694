/* The option parser every subcommand shares: each one describes its options in a table of
 * cli_opt and calls cli_parse_options; its own checks (required options, options that exclude
 * each other) come after. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "petl %s: %s needs an integer in %ld..%ld, got '%s'\n", cmd, opt, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "petl %s: %s needs a number in %g..%g, got '%s'\n", cmd, opt, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* The entry for argument a ("--name" or "--name=value"; *value set to what follows '='), or
 * NULL. */
static const cli_opt *find(const cli_opt *opts, size_t n, const char *a, const char **value) {
    const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    for (size_t k = 0; k < n; k++)
        if (opts[k].name && strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) {
            *value = eq ? eq + 1 : NULL;
            return &opts[k];
        }
    return NULL;
}

/* Stores value for o; 0, or -1 after a message. */
static int store(const char *cmd, const cli_opt *o, const char *name, const char *value) {
    long x;
    switch (o->kind) {
    case CLI_STR: *(const char **)o->dst = value; return 0;
    case CLI_LONG: return cli_parse_long(cmd, name, value, (long)o->lo, (long)o->hi, o->dst);
    case CLI_INT:
        if (cli_parse_long(cmd, name, value, (long)o->lo, (long)o->hi, &x)) return -1;
        *(int *)o->dst = (int)x;
        return 0;
    case CLI_DOUBLE: return cli_parse_double(cmd, name, value, o->lo, o->hi, o->dst);
    case CLI_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(value, o->choices[i])) {
                *(int *)o->dst = i;
                return 0;
            }
        fprintf(stderr, "petl %s: unknown value for %s: '%s'\n", cmd, name, value);
        return -1;
    case CLI_CUSTOM: return o->parse(cmd, name, value, o->dst);
    case CLI_FLAG:
    case CLI_REST: break; /* no value: handled by the caller */
    }
    return -1;
}

int cli_parse_options(const char *cmd, int argc, char **argv, const cli_opt *opts, size_t n_opts,
                      void (*usage)(FILE *)) {
    const cli_opt *positional = NULL;
    for (size_t k = 0; k < n_opts; k++)
        if (!opts[k].name) positional = &opts[k];
    bool have_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (positional && (a[0] != '-' || !a[1])) {
            if (positional->kind == CLI_STR && have_positional) {
                fprintf(stderr, "petl %s: unexpected argument '%s'\n\n", cmd, a);
                usage(stderr);
                return 2;
            }
            have_positional = true;
            if (store(cmd, positional, "argument", a)) return 2;
            continue;
        }
        const cli_opt *o = find(opts, n_opts, a, &value);
        if (!o) {
            fprintf(stderr, "petl %s: unknown option '%s'\n\n", cmd, a);
            usage(stderr);
            return 2;
        }
        if (o->kind == CLI_FLAG || o->kind == CLI_REST) {
            if (value) {
                fprintf(stderr, "petl %s: %s takes no value\n\n", cmd, o->name);
                usage(stderr);
                return 2;
            }
            if (o->kind == CLI_FLAG) {
                *(bool *)o->dst = true;
                continue;
            }
            cli_rest *rest = o->dst;
            rest->argv = argv + i + 1;
            rest->argc = argc - i - 1;
            return CLI_GO_ON;
        }
        if (!value && i + 1 < argc) value = argv[++i];
        if (!value) {
            fprintf(stderr, "petl %s: %s needs a value\n\n", cmd, o->name);
            usage(stderr);
            return 2;
        }
        if (store(cmd, o, o->name, value)) return 2;
    }
    return CLI_GO_ON;
}

/* ------------------------------------------------------------------------------- help */

#define HELP_COLUMN 23
#define HELP_WIDTH 92

void cli_help_line(FILE *f, const char *opt, const char *text) {
    int col = fprintf(f, "  %s", opt);
    const char *w = text;
    bool first = true;
    while (*w) {
        while (*w == ' ')
            w++;
        size_t len = strcspn(w, " ");
        if (!len) break;
        if (first || col + 1 + (int)len > HELP_WIDTH) {
            if (!first || col >= HELP_COLUMN) fprintf(f, "\n"), col = 0;
            col += fprintf(f, "%*s", HELP_COLUMN - col, "");
        } else {
            col += fprintf(f, " ");
        }
        col += fprintf(f, "%.*s", (int)len, w);
        w += len;
        first = false;
    }
    fputc('\n', f);
}

void cli_help_names(FILE *f, const char *opt, const char *const *names, size_t n,
                    const char *const *what, size_t n_what, size_t def) {
    char text[1024];
    size_t u = 0;
    for (size_t i = 0; i < n && u < sizeof text; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        const char *w = what && i < n_what ? what[i] : NULL;
        const char *dflt = i == def ? (w ? "default: " : "default") : "";
        if (w || i == def)
            u += (size_t)snprintf(text + u, sizeof text - u, "%s%s (%s%s)", sep, names[i], dflt,
                                  w ? w : "");
        else
            u += (size_t)snprintf(text + u, sizeof text - u, "%s%s", sep, names[i]);
    }
    cli_help_line(f, opt, text);
}
