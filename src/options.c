/* The names of the choices petl takes by name: what is tuned (--tune), the adapter activation
 * (--adapter-act), the adapter placement (--placement) and the arithmetic (--precision). One
 * table per enum, in enum order; `petl train`, `petl sweep`'s grid and adapter_config.json all
 * read and write the names through it, so each name is spelled here and nowhere else. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tune_names[] = {
    [PETL_TUNE_ADAPTER] = "adapter",     [PETL_TUNE_FULL] = "full", [PETL_TUNE_TOP] = "top",
    [PETL_TUNE_LAYERNORM] = "layernorm", [PETL_TUNE_HEAD] = "head",
};
static const char *const act_names[] = {
    [PETL_ADAPTER_GELU] = "gelu",
    [PETL_ADAPTER_RELU] = "relu",
    [PETL_ADAPTER_SWISH] = "swish",
};
static const char *const placement_names[] = {
    [PETL_PLACE_BOTH] = "both",
    [PETL_PLACE_FFN] = "ffn",
};
static const char *const precision_names[] = {
    [PETL_FP32] = "fp32",
    [PETL_BF16] = "bf16",
};

static const struct {
    const char *what; /* in messages: "unknown WHAT 'x' (a, b or c)" */
    const char *const *names;
    size_t n;
} tables[] = {
#define TABLE(kind, what, names) [kind] = {what, names, sizeof names / sizeof *names}
    TABLE(PETL_NAMES_TUNE, "tune mode", tune_names),
    TABLE(PETL_NAMES_ADAPTER_ACT, "adapter activation", act_names),
    TABLE(PETL_NAMES_PLACEMENT, "adapter placement", placement_names),
    TABLE(PETL_NAMES_PRECISION, "precision", precision_names),
#undef TABLE
};

const char *const *petl_option_names(petl_names_kind kind, size_t *n) {
    *n = tables[kind].n;
    return tables[kind].names;
}

static const char *name_of(petl_names_kind kind, int value) {
    return value >= 0 && (size_t)value < tables[kind].n ? tables[kind].names[value] : NULL;
}

/* The accepted names for a message: "a, b or c" (top as "top:K"). */
static void choices(petl_names_kind kind, char *buf, size_t cap) {
    size_t used = 0, n = tables[kind].n;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++) {
        if (!tables[kind].names[i]) continue; /* a value without a name (none today) */
        const bool top = kind == PETL_NAMES_TUNE && i == PETL_TUNE_TOP;
        used += (size_t)snprintf(buf + used, cap - used, "%s%s%s",
                                 i == 0       ? ""
                                 : i + 1 == n ? " or "
                                              : ", ",
                                 tables[kind].names[i], top ? ":K" : "");
    }
}

/* The index of text in the table, or PETL_ERR_ARG naming text and the accepted names. */
static petl_status lookup(petl_names_kind kind, const char *text, int *value, petl_error *err) {
    for (size_t i = 0; text && i < tables[kind].n; i++)
        if (tables[kind].names[i] && !strcmp(text, tables[kind].names[i])) {
            *value = (int)i;
            return PETL_OK;
        }
    char accepted[128];
    choices(kind, accepted, sizeof accepted);
    return petl_fail(err, PETL_ERR_ARG, "unknown %s '%s' (%s)", tables[kind].what, text ? text : "",
                     accepted);
}

const char *petl_tune_name(petl_tune t) {
    return name_of(PETL_NAMES_TUNE, (int)t);
}

petl_status petl_tune_parse(const char *text, petl_tune *tune, int *top_k, petl_error *err) {
    const char *top = tune_names[PETL_TUNE_TOP];
    const size_t tl = strlen(top);
    if (!text || strncmp(text, top, tl) != 0 || (text[tl] != ':' && text[tl] != '\0')) {
        int v;
        petl_status s = lookup(PETL_NAMES_TUNE, text, &v, err); /* never "top": it has no K */
        if (s == PETL_OK) *tune = (petl_tune)v;
        return s;
    }
    /* top:K */
    const char *k = text[tl] == ':' ? text + tl + 1 : "";
    char *end;
    errno = 0;
    long v = strtol(k, &end, 10);
    if (!*k || *end || errno || v < 1 || v > PETL_TUNE_TOP_MAX)
        return petl_fail(err, PETL_ERR_ARG,
                         "tune mode '%s': %s:K needs a number of layers K in 1..%d", text, top,
                         PETL_TUNE_TOP_MAX);
    *tune = PETL_TUNE_TOP;
    *top_k = (int)v;
    return PETL_OK;
}

const char *petl_adapter_act_name(petl_adapter_act a) {
    return name_of(PETL_NAMES_ADAPTER_ACT, (int)a);
}

petl_status petl_adapter_act_parse(const char *text, petl_adapter_act *a, petl_error *err) {
    int v;
    petl_status s = lookup(PETL_NAMES_ADAPTER_ACT, text, &v, err);
    if (s == PETL_OK) *a = (petl_adapter_act)v;
    return s;
}

const char *petl_placement_name(petl_adapter_placement p) {
    return name_of(PETL_NAMES_PLACEMENT, (int)p);
}

petl_status petl_placement_parse(const char *text, petl_adapter_placement *p, petl_error *err) {
    int v;
    petl_status s = lookup(PETL_NAMES_PLACEMENT, text, &v, err);
    if (s == PETL_OK) *p = (petl_adapter_placement)v;
    return s;
}

const char *petl_precision_name(petl_precision p) {
    return name_of(PETL_NAMES_PRECISION, (int)p);
}

petl_status petl_precision_parse(const char *text, petl_precision *p, petl_error *err) {
    int v;
    petl_status s = lookup(PETL_NAMES_PRECISION, text, &v, err);
    if (s == PETL_OK) *p = (petl_precision)v;
    return s;
}
