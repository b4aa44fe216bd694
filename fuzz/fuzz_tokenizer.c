/* libFuzzer target for petl_tokenize with the real vocabulary (PETL_MODEL_DIR, default
 * models/all-MiniLM-L6-v2 of this repository). The first byte picks max_len and where to split the
 * rest into a pair; the bytes are fed as they are, so most inputs are invalid UTF-8 and must be
 * refused cleanly. Checks: no crash or sanitizer report, an error only for invalid UTF-8, and on
 * success the [CLS] ... [SEP] frame, length <= max_len (when truncation applies), ids in
 * range and type ids 0 then 1. */
#include "petl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static petl_tokenizer *tok;
static petl_encoding enc; /* reused across inputs, as callers do */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* Default: the repository's model folder, found from this source file's path. */
    static char def[4096];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(def, sizeof def, "%.*s/../models/all-MiniLM-L6-v2",
             slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
    const char *dir = getenv("PETL_MODEL_DIR");
    if (!dir || !*dir) dir = def;
    petl_error err;
    if (petl_tokenizer_load(dir, &tok, &err) != PETL_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s (set PETL_MODEL_DIR)\n", err.msg);
        abort();
    }
    return 0;
}

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_tokenizer: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    static const int lens[8] = {0, 1, 2, 3, 4, 5, 16, 128};
    int max_len = lens[data[0] & 7];
    bool pair = data[0] & 8;
    const char *text = (const char *)data + 1;
    size_t n = size - 1, cut = pair ? (n * (data[0] >> 4)) / 16 : n;
    petl_error err;
    petl_status st = petl_tokenize(tok, text, cut, pair ? text + cut : NULL, pair ? n - cut : 0,
                                   max_len, &enc, &err);
    if (st != PETL_OK) {
        check(st == PETL_ERR_UTF8, "only invalid UTF-8 may fail");
        check(strstr(err.msg, "invalid UTF-8") != NULL, "UTF-8 error message");
        return 0;
    }
    int32_t cls = petl_tokenizer_token_to_id(tok, "[CLS]");
    int32_t sep = petl_tokenizer_token_to_id(tok, "[SEP]");
    bool is_pair = pair && n - cut > 0;
    int added = is_pair ? 3 : 2;
    check(enc.len >= added && enc.len <= enc.cap, "length");
    if (max_len >= added) check(enc.len <= max_len, "truncated to max_len");
    check(enc.ids[0] == cls && enc.ids[enc.len - 1] == sep, "[CLS] ... [SEP]");
    int switches = 0;
    for (int i = 0; i < enc.len; i++) {
        check(enc.ids[i] >= 0 && enc.ids[i] < petl_tokenizer_vocab_size(tok), "id in range");
        check(enc.type_ids[i] == 0 || enc.type_ids[i] == 1, "type id 0 or 1");
        if (i > 0 && enc.type_ids[i] != enc.type_ids[i - 1]) switches++;
        if (i > 0) check(enc.type_ids[i] >= enc.type_ids[i - 1], "type ids 0 then 1");
    }
    check(enc.type_ids[0] == 0 && switches == (is_pair ? 1 : 0), "type ids of a pair");
    return 0;
}
