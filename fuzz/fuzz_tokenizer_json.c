/* libFuzzer target: any bytes as a tokenizer.json (petl_tokenizer_from_json). A refused file
 * must fail with a message naming it; an accepted one must then tokenize a few texts (single,
 * pair, truncated, with added-token look-alikes) with every id in the vocabulary and every span
 * inside the texts (or fail naming a broken Precompiled charsmap). */
#include "petl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    petl_tokenizer *tok = NULL;
    petl_error err;
    if (petl_tokenizer_from_json((const char *)data, size, "fuzz", &tok, &err) != PETL_OK) {
        check(tok == NULL && memchr(err.msg, '\0', sizeof err.msg) && !strncmp(err.msg, "fuzz", 4));
        return 0;
    }
    static const char *const texts[] = {"", "Hello, World! [CLS] <s> a b ab ##b",
                                        "  caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 x\xcc\x81",
                                        "<mask> [SEP]</s></s>\t\xe3\x80\x80z",
                                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    const size_t n_texts = sizeof texts / sizeof texts[0];
    petl_encoding enc = {0};
    int32_t n_vocab = petl_tokenizer_vocab_size(tok);
    check(n_vocab > 0 && petl_tokenizer_pad_id(tok) >= 0 && petl_tokenizer_pad_id(tok) < n_vocab);
    for (size_t i = 0; i < n_texts; i++) {
        for (int m = 0; m < 3; m++) {
            static const int lens[3] = {0, 5, 128};
            const char *a = texts[i], *b = m ? texts[(i + 1) % n_texts] : NULL;
            size_t la = strlen(a), lb = b ? strlen(b) : 0;
            petl_status st = petl_tokenize_offsets(tok, a, la, b, lb, lens[m], &enc, &err);
            /* a Precompiled charsmap's trie is only walked as texts need it: a broken one is
             * found then, and must be an error naming it */
            if (st == PETL_ERR_FORMAT && strstr(err.msg, "\"Precompiled\"")) continue;
            check(st == PETL_OK);
            for (int k = 0; k < enc.len; k++) {
                check(enc.ids[k] >= 0 && enc.ids[k] < n_vocab);
                int32_t beg = enc.offsets[2 * k], end = enc.offsets[2 * k + 1];
                check(beg >= 0 && beg <= end && (size_t)end <= (la > lb ? la : lb));
            }
        }
    }
    petl_encoding_free(&enc);
    petl_tokenizer_free(tok);
    return 0;
}
