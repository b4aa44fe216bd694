/* petl serve's request parsing: pure functions from a request body to a parsed request or a
 * rejection (HTTP status + reason), the task-name rule, and the constant-time comparison of the
 * admin token. Depends on jansson and server.h's types only: no server state, no threads, so
 * that fuzz/fuzz_server_request.c can drive it alone. petl_srv_rejectf, which fills a
 * rejection, is shared with the task registry. */
#include "server.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void petl_srv_rejectf(petl_srv_reject *rej, int status, const char *fmt, ...) {
    if (!rej) return;
    rej->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rej->reason, sizeof rej->reason, fmt, ap);
    va_end(ap);
}

bool petl_srv_name_valid(const char *name, size_t len) {
    if (!name || len == 0 || len > PETL_SRV_NAME_MAX || name[0] == '.') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

/* Parses a JSON object body; on failure fills rej (400) and returns NULL. */
static json_t *parse_object(const char *body, size_t len, petl_srv_reject *rej) {
    if (!body || len == 0) {
        petl_srv_rejectf(rej, 400, "empty body: expected a JSON object");
        return NULL;
    }
    json_error_t je;
    /* Without JSON_ALLOW_NUL, "\u0000" is refused: C strings downstream stay whole. jansson
     * refuses invalid UTF-8 and bounds the nesting depth itself. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        petl_srv_rejectf(rej, 400, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                         je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        petl_srv_rejectf(rej, 400, "expected a JSON object");
        return NULL;
    }
    return root;
}

/* The first key of obj not in allowed[], or NULL. Unknown keys are refused so that a typo
 * ("input") is an error rather than a silently different request. */
static const char *unknown_key(json_t *obj, const char *const *allowed, size_t n) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        (void)v;
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (!ok) return key;
    }
    return NULL;
}

static bool get_name(json_t *root, const char *key, char name[PETL_SRV_NAME_MAX + 1],
                     petl_srv_reject *rej) {
    json_t *t = json_object_get(root, key);
    if (!t || !json_is_string(t)) {
        petl_srv_rejectf(rej, 400, "expected a string field \"%s\"", key);
        return false;
    }
    size_t n = json_string_length(t);
    if (!petl_srv_name_valid(json_string_value(t), n)) {
        petl_srv_rejectf(
            rej, 400,
            "\"%s\": a task name is 1 to %d characters of A-Z a-z 0-9 _ - . and does not "
            "start with '.'",
            key, PETL_SRV_NAME_MAX);
        return false;
    }
    memcpy(name, json_string_value(t), n + 1);
    return true;
}

bool petl_srv_parse_predict(const char *body, size_t len, size_t max_inputs, petl_srv_request *out,
                            petl_srv_reject *rej) {
    memset(out, 0, sizeof *out);
    json_t *root = parse_object(body, len, rej);
    if (!root) return false;
    static const char *const keys[] = {"task", "inputs"};
    const char *bad = unknown_key(root, keys, 2);
    if (bad) {
        /* The key is user input: cut it short; the JSON encoder escapes it on the way out. */
        petl_srv_rejectf(rej, 400, "unknown field \"%.64s\" (expected \"task\" and \"inputs\")",
                         bad);
        goto fail;
    }
    if (!get_name(root, "task", out->task, rej)) goto fail;
    json_t *in = json_object_get(root, "inputs");
    if (!in || !json_is_array(in)) {
        petl_srv_rejectf(rej, 400,
                         "expected an array field \"inputs\" of strings or [text_a, text_b] pairs");
        goto fail;
    }
    size_t n = json_array_size(in);
    if (n == 0) {
        petl_srv_rejectf(rej, 400, "\"inputs\" is empty");
        goto fail;
    }
    if (n > max_inputs) {
        petl_srv_rejectf(rej, 413, "%zu inputs in one request; the limit is %zu", n, max_inputs);
        goto fail;
    }
    out->inputs = calloc(n, sizeof *out->inputs);
    if (!out->inputs) {
        petl_srv_rejectf(rej, 500, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(in, i);
        json_t *a = x, *b = NULL;
        if (json_is_array(x)) {
            size_t k = json_array_size(x);
            if (k < 1 || k > 2) {
                petl_srv_rejectf(
                    rej, 400, "inputs[%zu]: a pair is [text_a, text_b] (%zu elements given)", i, k);
                goto fail;
            }
            a = json_array_get(x, 0);
            b = k == 2 ? json_array_get(x, 1) : NULL;
        }
        if (!json_is_string(a) || (b && !json_is_string(b))) {
            petl_srv_rejectf(rej, 400, "inputs[%zu]: expected a string or an array of two strings",
                             i);
            goto fail;
        }
        petl_srv_input *p = &out->inputs[i];
        p->a = json_string_value(a);
        p->len_a = json_string_length(a);
        if (b) {
            p->b = json_string_value(b);
            p->len_b = json_string_length(b);
        }
    }
    out->n_inputs = n;
    out->root = root;
    return true;
fail:
    free(out->inputs);
    json_decref(root);
    memset(out, 0, sizeof *out);
    return false;
}

void petl_srv_request_free(petl_srv_request *r) {
    if (!r) return;
    free(r->inputs);
    if (r->root) json_decref((json_t *)r->root);
    memset(r, 0, sizeof *r);
}

bool petl_srv_parse_load(const char *body, size_t len, char name[PETL_SRV_NAME_MAX + 1],
                         char **path, petl_srv_reject *rej) {
    *path = NULL;
    name[0] = '\0';
    json_t *root = parse_object(body, len, rej);
    if (!root) return false;
    static const char *const keys[] = {"name", "path"};
    const char *bad = unknown_key(root, keys, 2);
    bool ok = false;
    if (bad) {
        petl_srv_rejectf(rej, 400, "unknown field \"%.64s\" (expected \"name\" and \"path\")", bad);
        goto done;
    }
    if (!get_name(root, "name", name, rej)) goto done;
    json_t *p = json_object_get(root, "path");
    if (!p || !json_is_string(p) || json_string_length(p) == 0 ||
        json_string_length(p) >= PATH_MAX) {
        petl_srv_rejectf(rej, 400,
                         "expected a non-empty string field \"path\" (an adapter folder)");
        goto done;
    }
    *path = strdup(json_string_value(p));
    if (!*path) {
        petl_srv_rejectf(rej, 500, "out of memory");
        goto done;
    }
    ok = true;
done:
    if (!ok) name[0] = '\0';
    json_decref(root);
    return ok;
}

bool petl_srv_token_equal(const char *given, size_t given_len, const char *secret,
                          size_t secret_len) {
    /* Every byte of the secret is visited whatever the input, and no early exit: the time
     * tells an attacker the secret's length at most. */
    volatile unsigned char diff = (unsigned char)(given_len != secret_len);
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}
