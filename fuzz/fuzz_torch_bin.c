/* libFuzzer target: any bytes through the torch.save reader (zip directory, restricted
 * unpickler, tensor layout). A file it accepts must be self-consistent: every tensor lies
 * inside the buffer, is found by its name and converts without faulting; a refusal names the
 * input. */
#include "petl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    petl_safetensors *st = NULL;
    petl_error err;
    if (petl_torch_parse(data, size, "fuzz", &st, &err) != PETL_OK) {
        if (st || !memchr(err.msg, '\0', sizeof err.msg) || strncmp(err.msg, "fuzz", 4)) abort();
        return 0;
    }
    const uint8_t *end = data + size;
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const petl_st_tensor *t = petl_st_at(st, i);
        const uint8_t *p = t->data;
        uint64_t nbytes = (uint64_t)t->numel * petl_dtype_size(t->dtype);
        if (p < data || p > end || t->end - t->begin != nbytes || nbytes > (uint64_t)(end - p) ||
            t->begin != (uint64_t)(p - data))
            abort();
        if (petl_st_find(st, t->name) != t) abort();
        if (t->numel <= 4096) {
            float buf[4096];
            (void)petl_st_read_f32(t, buf, &err);
        }
    }
    petl_st_close(st);
    return 0;
}
