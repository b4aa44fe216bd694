/* libFuzzer target: any bytes as the body of POST /v1/predict and POST /v1/tasks. The parser
 * must accept or refuse with a 4xx and a reason, never crash, read out of bounds or leak; an
 * accepted request must satisfy what the server relies on downstream. */
#include "server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUTS 64

static void check_reject(const petl_srv_reject *rej) {
    if (rej->status != 400 && rej->status != 413) abort();
    if (!memchr(rej->reason, '\0', sizeof rej->reason) || rej->reason[0] == '\0') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly size bytes: ASan catches any read past the end. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    petl_srv_request r;
    petl_srv_reject rej;
    if (petl_srv_parse_predict(body, size, MAX_INPUTS, &r, &rej)) {
        if (r.n_inputs < 1 || r.n_inputs > MAX_INPUTS || !r.inputs || !r.root) abort();
        if (!petl_srv_name_valid(r.task, strlen(r.task))) abort();
        for (size_t i = 0; i < r.n_inputs; i++) {
            const petl_srv_input *in = &r.inputs[i];
            /* No NUL inside a text: the tokenizer gets whole strings. */
            if (!in->a || strlen(in->a) != in->len_a) abort();
            if (in->b && strlen(in->b) != in->len_b) abort();
        }
        petl_srv_request_free(&r);
    } else {
        check_reject(&rej);
        if (r.inputs || r.root || r.n_inputs) abort();
    }
    char name[PETL_SRV_NAME_MAX + 1];
    char *path;
    if (petl_srv_parse_load(body, size, name, &path, &rej)) {
        if (!petl_srv_name_valid(name, strlen(name)) || !path || !path[0]) abort();
        free(path);
    } else {
        check_reject(&rej);
        if (path) abort();
    }
    free(body);
    return 0;
}
