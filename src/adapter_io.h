/* The adapter on disk, internal half: the pieces of src/adapter_io.c that only the library and
 * the tests use. The folder layout, petl_adapter_info, petl_adapter_save / petl_adapter_load and
 * the base identity are public (include/petl.h, section "adapter folders"). */
#ifndef PETL_ADAPTER_IO_H
#define PETL_ADAPTER_IO_H

#include "petl.h"

#define PETL_ADAPTER_FORMAT_VERSION 1

/* A 64-bit hash of every float of the model's parameter block. Hand-written rather than a
 * dependency: it only has to tell different checkpoints apart (not resist an adversary), must
 * be stable across versions of petl, and runs once per process over ~90 MB (BERT-base 440 MB):
 * four independent multiply-rotate lanes over 64-bit words (xxhash-like, ~10 GB/s) instead of
 * byte-wise FNV-1a (~1 GB/s, one serial multiply per byte). What petl_base_identity_of puts
 * in content_hash. */
uint64_t petl_model_content_hash(const petl_model *m);

/* Reads and validates dir/adapter_config.json only. */
petl_status petl_adapter_read_info(const char *dir, petl_adapter_info *info, petl_error *err);

/* Checks that info was made for a base with identity `id`: PETL_ERR_ARG naming every field
 * that differs (the tokenizer's only when both sides record one). */
petl_status petl_adapter_check_base(const char *dir, const petl_base_identity *have,
                                    const petl_base_identity *want, petl_error *err);

/* Fault injection for the tests: when set to k > 0, the k-th step of the next
 * petl_adapter_save fails as if the disk were full (1: after the weights, 2: after the config,
 * 3: before the swap into place). Reset to 0 after it fires. Not thread-safe; tests only. */
extern int petl_adapter_fail_at;

/* Hash of a float block, as stored in adapter.safetensors' metadata (same function as the
 * model content hash). */
uint64_t petl_hash_floats(const float *x, size_t n, uint64_t seed);

#endif
