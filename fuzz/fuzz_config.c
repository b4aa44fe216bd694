/* libFuzzer target: any bytes through the config.json parser. An accepted config must satisfy
 * the invariants the encoder relies on. */
#include "petl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    petl_config c;
    petl_error err;
    if (petl_config_parse((const char *)data, size, "fuzz", &c, &err) != PETL_OK) {
        if (!memchr(err.msg, '\0', sizeof err.msg) || strncmp(err.msg, "fuzz", 4)) abort();
        return 0;
    }
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_layers < 1 || c.num_heads < 1 ||
        c.intermediate_size < 1 || c.max_position_embeddings < 1 || c.type_vocab_size < 1 ||
        c.hidden_size % c.num_heads != 0 || !(c.layer_norm_eps > 0) || c.pad_token_id < 0 ||
        c.pad_token_id >= c.vocab_size || strcmp(petl_act_name(c.hidden_act), "?") == 0)
        abort();
    return 0;
}
