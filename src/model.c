/* Loading an encoder checkpoint (config.json + model.safetensors, or pytorch_model.bin when
 * there is no safetensors file) into one float allocation.
 *
 * Every tensor the encoder needs is looked up, checked for its exact shape, and only then is
 * memory allocated and filled: a checkpoint that does not fit the config fails before any large
 * allocation. The weights are copied out of the mapping (and F16 / BF16 converted), so the file
 * is closed when loading returns. */
#include "model.h"

#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One tensor the encoder expects: its key without the architecture's prefix ("bert.") (LayerNorm
 * parameters under their "weight" / "bias" names), its shape, and where its floats go. */
typedef struct {
    char key[96];
    int rank;
    int64_t shape[2];
    int64_t numel;
    float **dst;     /* the named pointer that receives the base of the tensor's block... */
    int64_t dst_off; /* ...plus this many floats (Q, K, V share one block) */
    bool layernorm;  /* also look the key up with gamma / beta */
    const petl_st_tensor *t;
} param_spec;

static void spec_set(param_spec *s, const char *key, int rank, int64_t d0, int64_t d1, float **dst,
                     int64_t off) {
    memset(s, 0, sizeof *s);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->rank = rank;
    s->shape[0] = d0;
    s->shape[1] = rank == 2 ? d1 : 0;
    s->numel = rank == 2 ? d0 * d1 : d0;
    s->dst = dst;
    s->dst_off = off;
    s->layernorm = strstr(key, "LayerNorm.") != NULL;
}

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Finds spec s in the file under prefix, trying gamma / beta for LayerNorm parameters. */
static const petl_st_tensor *find_param(const petl_safetensors *st, const char *prefix,
                                        const param_spec *s) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, s->key);
    const petl_st_tensor *t = petl_st_find(st, name);
    if (t || !s->layernorm) return t;
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, ".weight"))
        snprintf(name + n - 7, sizeof name - (n - 7), ".gamma");
    else if (n > 5 && !strcmp(name + n - 5, ".bias"))
        snprintf(name + n - 5, sizeof name - (n - 5), ".beta");
    return petl_st_find(st, name);
}

static petl_status check_config(const char *path, petl_config *c, const petl_arch **arch,
                                petl_error *err) {
    *arch = petl_arch_find(c->model_type);
    if (!*arch)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: \"model_type\" is \"%s\": petl runs %s",
                         path, c->model_type, petl_arch_names());
    if (!c->embedding_size) c->embedding_size = c->hidden_size;
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 ||
        c->intermediate_size <= 0 || c->max_position_embeddings <= 0 || c->type_vocab_size <= 0 ||
        c->embedding_size <= 0 || c->rel_buckets < 0)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: sizes must be positive", path);
    if (c->embedding_size != c->hidden_size && !(*arch)->emb_project_w)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: embedding_size %d differs from hidden_size %d, which %s models do "
                         "not project",
                         path, c->embedding_size, c->hidden_size, c->model_type);
    if ((*arch)->rel_bias && c->rel_buckets < PETL_MPNET_BUCKETS)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: relative_attention_num_buckets %d: MPNet buckets relative positions "
                         "into %d, so its table needs at least as many rows",
                         path, c->rel_buckets, PETL_MPNET_BUCKETS);
    if (c->hidden_size % c->num_heads != 0)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                         c->hidden_size, c->num_heads);
    /* Bounds far above any BERT that keep every element count below 2^62. */
    const int lim = 1 << 24;
    if (c->vocab_size > lim || c->hidden_size > lim || c->intermediate_size > lim ||
        c->max_position_embeddings > lim || c->type_vocab_size > lim || c->num_layers > 4096 ||
        c->embedding_size > lim || c->rel_buckets > 4096)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: sizes are implausibly large", path);
    return PETL_OK;
}

/* Fills specs[] (at most 8 + 16 L + 2 entries) in the order of the parameter block, named by the
 * model's architecture description. Returns the count. */
static size_t build_specs(petl_model *m, param_spec *specs, bool with_pooler) {
    const petl_config *c = &m->cfg;
    const petl_arch *a = m->arch;
    const int64_t H = c->hidden_size, I = c->intermediate_size, E = c->embedding_size;
    size_t n = 0;
    spec_set(&specs[n++], a->emb[PETL_E_WORD], 2, c->vocab_size, E, &m->word_emb, 0);
    spec_set(&specs[n++], a->emb[PETL_E_POS], 2, c->max_position_embeddings, E, &m->pos_emb, 0);
    if (a->emb[PETL_E_TYPE])
        spec_set(&specs[n++], a->emb[PETL_E_TYPE], 2, c->type_vocab_size, E, &m->type_emb, 0);
    spec_set(&specs[n++], a->emb[PETL_E_LN_W], 1, E, 0, &m->emb_ln_w, 0);
    spec_set(&specs[n++], a->emb[PETL_E_LN_B], 1, E, 0, &m->emb_ln_b, 0);
    if (E != H) {
        spec_set(&specs[n++], a->emb_project_w, 2, H, E, &m->emb_proj_w, 0);
        spec_set(&specs[n++], a->emb_project_b, 1, H, 0, &m->emb_proj_b, 0);
    }
    if (a->rel_bias)
        spec_set(&specs[n++], a->rel_bias, 2, c->rel_buckets, c->num_heads, &m->rel_bias, 0);
    for (int l = 0; l < c->num_layers; l++) {
        petl_layer_params *p = &m->layers[l];
        /* where each layer tensor goes, in petl_layer_tensor order */
        struct {
            int rank;
            int64_t d0, d1;
            float **dst;
            int64_t off;
        } t[PETL_L_COUNT] = {
            {2, H, H, &p->qkv_w, 0},         {2, H, H, &p->qkv_w, H * H},
            {2, H, H, &p->qkv_w, 2 * H * H}, {1, H, 0, &p->qkv_b, 0},
            {1, H, 0, &p->qkv_b, H},         {1, H, 0, &p->qkv_b, 2 * H},
            {2, H, H, &p->attn_out_w, 0},    {1, H, 0, &p->attn_out_b, 0},
            {1, H, 0, &p->ln1_w, 0},         {1, H, 0, &p->ln1_b, 0},
            {2, I, H, &p->ffn_in_w, 0},      {1, I, 0, &p->ffn_in_b, 0},
            {2, H, I, &p->ffn_out_w, 0},     {1, H, 0, &p->ffn_out_b, 0},
            {1, H, 0, &p->ln2_w, 0},         {1, H, 0, &p->ln2_b, 0},
        };
        for (int i = 0; i < PETL_L_COUNT; i++) {
            char k[96], pre[48];
            snprintf(pre, sizeof pre, a->layer, l);
            snprintf(k, sizeof k, "%s%s", pre, a->layer_keys[i]);
            spec_set(&specs[n++], k, t[i].rank, t[i].d0, t[i].d1, t[i].dst, t[i].off);
        }
    }
    if (with_pooler) {
        spec_set(&specs[n++], a->pooler_w, 2, H, H, &m->pool_w, 0);
        spec_set(&specs[n++], a->pooler_b, 1, H, 0, &m->pool_b, 0);
    }
    return n;
}

/* Looks up every spec and checks its shape; nothing is allocated or read yet. */
static petl_status find_all(const petl_safetensors *st, const char *path, const char *prefix,
                            param_spec *specs, size_t n, petl_error *err) {
    for (size_t i = 0; i < n; i++) {
        param_spec *s = &specs[i];
        s->t = find_param(st, prefix, s);
        if (!s->t)
            return petl_fail(err, PETL_ERR_SHAPE, "%s: missing tensor '%s%s'%s", path, prefix,
                             s->key, s->layernorm ? " (nor its gamma/beta name)" : "");
        bool ok = s->t->rank == s->rank;
        for (int d = 0; ok && d < s->rank; d++)
            ok = s->t->shape[d] == s->shape[d];
        if (!ok) {
            char want[64], got[200];
            shape_str(want, sizeof want, s->rank, s->shape);
            shape_str(got, sizeof got, s->t->rank, s->t->shape);
            return petl_fail(err, PETL_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", path,
                             s->t->name, got, want);
        }
        if (s->t->dtype != PETL_DT_F32 && s->t->dtype != PETL_DT_F16 &&
            s->t->dtype != PETL_DT_BF16 && s->t->dtype != PETL_DT_F64)
            return petl_fail(err, PETL_ERR_SHAPE,
                             "%s: tensor '%s' has dtype %s, expected a float type (F32, F16, "
                             "BF16)",
                             path, s->t->name, petl_dtype_name(s->t->dtype));
    }
    return PETL_OK;
}

/* Opens DIR/model.safetensors or, when there is none, DIR/pytorch_model.bin (torch.save's
 * format, src/torch_bin.c). *path gets the file's path (caller frees), also on failure. */
static petl_status open_weights(const char *dir, char **path, petl_safetensors **st,
                                petl_error *err) {
    *path = petl_path_join(dir, "model.safetensors");
    if (!*path) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (access(*path, F_OK) == 0 || errno != ENOENT) return petl_st_open(*path, st, err);
    char *bin = petl_path_join(dir, "pytorch_model.bin");
    if (!bin) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (access(bin, F_OK) != 0 && errno == ENOENT) {
        free(bin);
        return petl_fail(err, PETL_ERR_IO, "%s: no model.safetensors or pytorch_model.bin", dir);
    }
    free(*path);
    *path = bin;
    return petl_torch_open(bin, st, err);
}

static petl_status load_weights(petl_model *m, const char *dir, petl_error *err) {
    petl_status rc = PETL_OK;
    petl_safetensors *st = NULL;
    param_spec *specs = NULL;
    char *path = NULL;
    rc = open_weights(dir, &path, &st, err);
    if (rc != PETL_OK) goto done;

    const petl_arch *a = m->arch;
    char name[160];
    snprintf(name, sizeof name, "%s%s", a->prefix, a->emb[PETL_E_WORD]);
    const char *prefix = petl_st_find(st, name) ? a->prefix : "";
    bool has_w = false, has_b = false;
    if (a->pooler_w) {
        snprintf(name, sizeof name, "%s%s", prefix, a->pooler_w);
        has_w = petl_st_find(st, name) != NULL;
        snprintf(name, sizeof name, "%s%s", prefix, a->pooler_b);
        has_b = petl_st_find(st, name) != NULL;
    }
    if (has_w != has_b) {
        rc = petl_fail(err, PETL_ERR_SHAPE, "%s: pooler has a %s but no %s", path,
                       has_w ? "weight" : "bias", has_w ? "bias" : "weight");
        goto done;
    }
    m->has_pooler = has_w;

    size_t max_specs = 10 + 16 * (size_t)m->cfg.num_layers;
    specs = calloc(max_specs, sizeof *specs);
    if (!specs) {
        rc = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n = build_specs(m, specs, m->has_pooler);
    rc = find_all(st, path, prefix, specs, n, err);
    if (rc != PETL_OK) goto done;

    /* Layout: each destination pointer gets a block; Q, K, V (dst_off > 0) extend the block of
     * the spec that starts it. Specs are in block order, so a running offset assigns them. */
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += specs[i].numel;
    if ((uint64_t)total > SIZE_MAX / sizeof(float)) {
        rc = petl_fail(err, PETL_ERR_NOMEM, "%s: %lld parameters do not fit in memory", path,
                       (long long)total);
        goto done;
    }
    /* 64-byte alignment: whole cache lines and AVX-512 loads for the first tensor. */
    size_t bytes = ((size_t)total * sizeof(float) + 63) / 64 * 64;
    m->mem = aligned_alloc(64, bytes);
    if (!m->mem) {
        rc = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory for %zu bytes of parameters", path,
                       bytes);
        goto done;
    }
    m->num_params = total;
    int64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (specs[i].dst_off == 0) *specs[i].dst = m->mem + off;
        off += specs[i].numel;
    }
    for (size_t i = 0; i < n && rc == PETL_OK; i++) {
        rc = petl_st_read_f32(specs[i].t, *specs[i].dst + specs[i].dst_off, err);
        petl_st_drop_pages(st, specs[i].t); /* peak memory: the file is not held beside its copy */
    }

done:
    free(specs);
    petl_st_close(st);
    free(path);
    return rc;
}

int petl_model_max_len(const petl_model *m) {
    return m->cfg.max_position_embeddings - m->pos_offset;
}

petl_status petl_model_check_max_len(const petl_model *m, int max_len, petl_error *err) {
    const int P = petl_model_max_len(m);
    if (max_len <= P) return PETL_OK;
    if (m->config_path)
        return petl_fail(err, PETL_ERR_ARG,
                         "max_len %d is over the model's %d positions "
                         "(max_position_embeddings in %s%s)",
                         max_len, P, m->config_path,
                         m->pos_offset ? ", less the first position id" : "");
    return petl_fail(err, PETL_ERR_ARG, "max_len %d is over the model's %d positions", max_len, P);
}

petl_status petl_model_load(const char *model_dir, petl_model **out, petl_error *err) {
    *out = NULL;
    if (!model_dir) return petl_fail(err, PETL_ERR_ARG, "model folder is NULL");
    petl_model *m = calloc(1, sizeof *m);
    char *cpath = petl_path_join(model_dir, "config.json");
    if (!m || !cpath) {
        free(m);
        free(cpath);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    }
    petl_status rc = petl_config_load(cpath, &m->cfg, err);
    if (rc == PETL_OK) rc = check_config(cpath, &m->cfg, &m->arch, err);
    m->config_path = cpath; /* freed with the model */
    if (rc == PETL_OK) {
        const petl_arch *a = m->arch;
        m->pos_offset = a->pos_start       ? a->pos_start
                        : a->pos_after_pad ? m->cfg.pad_token_id + 1
                                           : 0;
        if (m->pos_offset >= m->cfg.max_position_embeddings)
            rc = petl_fail(err, PETL_ERR_FORMAT,
                           "%s: positions start at pad_token_id + 1 = %d, beyond the %d position "
                           "embeddings",
                           cpath, m->pos_offset, m->cfg.max_position_embeddings);
    }
    if (rc == PETL_OK) {
        m->layers = calloc((size_t)m->cfg.num_layers, sizeof *m->layers);
        if (!m->layers) rc = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    }
    if (rc == PETL_OK) rc = load_weights(m, model_dir, err);
    if (rc != PETL_OK) {
        petl_model_free(m);
        return rc;
    }
    *out = m;
    return PETL_OK;
}

static void free_bf16(petl_model *m) {
    if (!m->bf16) return;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        petl_bf16_mat *all[] = {&m->bf16[l].qkv,      &m->bf16[l].attn_out, &m->bf16[l].ffn_in,
                                &m->bf16[l].ffn_out,  &m->bf16[l].qkv_t,    &m->bf16[l].attn_out_t,
                                &m->bf16[l].ffn_in_t, &m->bf16[l].ffn_out_t};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            petl_bf16_free(all[i]);
    }
    free(m->bf16);
    m->bf16 = NULL;
}

petl_status petl_model_set_precision(petl_model *m, petl_precision p, bool training,
                                     petl_error *err) {
    if (p != PETL_FP32 && p != PETL_BF16)
        return petl_fail(err, PETL_ERR_ARG, "unknown precision %d", (int)p);
    if (p == PETL_BF16) {
#if defined(__AVX512BF16__)
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx512bf16"))
            return petl_fail(err, PETL_ERR_UNSUPPORTED,
                             "--precision bf16 needs a CPU with AVX512-BF16 (this one has none)");
#else
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "--precision bf16: this build has no AVX512-BF16 kernels (build with "
                         "-march set to a CPU that has them)");
#endif
    }
    free_bf16(m);
    if (p == PETL_FP32) return PETL_OK;
    const int L = m->cfg.num_layers, H = m->cfg.hidden_size, I = m->cfg.intermediate_size;
    m->bf16 = calloc((size_t)L, sizeof *m->bf16);
    if (!m->bf16) return petl_fail(err, PETL_ERR_NOMEM, "bf16 weights: out of memory");
    petl_status s = PETL_OK;
    for (int l = 0; l < L && s == PETL_OK; l++) {
        const petl_layer_params *w = &m->layers[l];
        petl_layer_bf16 *b = &m->bf16[l];
        /* forward: W [out, in] as is */
        if ((s = petl_bf16_pack(&b->qkv, w->qkv_w, 3 * H, H, H, 1, err)) ||
            (s = petl_bf16_pack(&b->attn_out, w->attn_out_w, H, H, H, 1, err)) ||
            (s = petl_bf16_pack(&b->ffn_in, w->ffn_in_w, I, H, H, 1, err)) ||
            (s = petl_bf16_pack(&b->ffn_out, w->ffn_out_w, H, I, I, 1, err)))
            break;
        if (!training) continue;
        /* backward: d inp [n, in] = d out [n, out] . W, i.e. B = W^T [in, out] */
        if ((s = petl_bf16_pack(&b->qkv_t, w->qkv_w, H, 3 * H, 1, H, err)) ||
            (s = petl_bf16_pack(&b->attn_out_t, w->attn_out_w, H, H, 1, H, err)) ||
            (s = petl_bf16_pack(&b->ffn_in_t, w->ffn_in_w, H, I, 1, H, err)) ||
            (s = petl_bf16_pack(&b->ffn_out_t, w->ffn_out_w, I, H, 1, I, err)))
            break;
    }
    if (s != PETL_OK) free_bf16(m);
    return s;
}

petl_precision petl_model_precision(const petl_model *m) {
    return m->bf16 ? PETL_BF16 : PETL_FP32;
}

void petl_model_free(petl_model *m) {
    if (!m) return;
    free_bf16(m);
    free(m->mem);
    free(m->layers);
    free(m->config_path);
    free(m);
}

const petl_config *petl_model_config(const petl_model *m) {
    return &m->cfg;
}

bool petl_model_has_pooler(const petl_model *m) {
    return m->has_pooler;
}

int64_t petl_model_num_params(const petl_model *m) {
    return m->num_params;
}

petl_status petl_batch_check(const petl_model *m, int max_batch, int max_len, const petl_batch *b,
                             bool check_padding, petl_error *err) {
    const petl_config *c = &m->cfg;
    const int P = petl_model_max_len(m);
    if (!b || !b->ids || !b->type_ids || !b->lengths)
        return petl_fail(err, PETL_ERR_ARG, "batch or one of its arrays is NULL");
    if (b->batch < 1 || b->batch > max_batch)
        return petl_fail(err, PETL_ERR_ARG, "batch size %d is outside 1..%d (the context's)",
                         b->batch, max_batch);
    if (b->seq < 1 || b->seq > P)
        return petl_fail(err, PETL_ERR_ARG,
                         "sequence length %d is outside 1..%d (the model's positions)", b->seq, P);
    if (b->seq > max_len)
        return petl_fail(err, PETL_ERR_ARG, "sequence length %d is over the context's %d", b->seq,
                         max_len);
    for (int r = 0; r < b->batch; r++) {
        if (b->lengths[r] < 1 || b->lengths[r] > b->seq)
            return petl_fail(err, PETL_ERR_ARG, "batch row %d: length %d is outside 1..%d", r,
                             b->lengths[r], b->seq);
        const int n = check_padding ? b->seq : b->lengths[r];
        for (int p = 0; p < n; p++) {
            int64_t at = (int64_t)r * b->seq + p;
            if (b->ids[at] < 0 || b->ids[at] >= c->vocab_size)
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d, position %d: token id %d is outside the "
                                 "vocabulary 0..%d",
                                 r, p, (int)b->ids[at], c->vocab_size - 1);
            /* families that read no token types ignore them */
            if (m->arch->token_types &&
                (b->type_ids[at] < 0 || b->type_ids[at] >= c->type_vocab_size))
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d, position %d: token type %d is outside 0..%d", r, p,
                                 (int)b->type_ids[at], c->type_vocab_size - 1);
        }
    }
    return PETL_OK;
}
