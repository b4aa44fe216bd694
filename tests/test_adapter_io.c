/* The adapter folder on disk (src/adapter_io.c), on the tiny committed checkpoint:
 * save / load round trip bit for bit, no overwrite without force, a base-model mismatch refused
 * with the differing field named, damaged / truncated / incomplete files refused with clear
 * messages, and the old adapter intact after a failed save at every step (fault injection). */
#include "adapter_io.h"
#include "check.h"
#include "internal.h"
#include "model.h"
#include "taskmodel.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[256];

/* The tiny checkpoint is committed as model.st: link it into a model folder. */
static void make_model_dir(const char *dir) {
    const char *names[][2] = {{"config.json", "config.json"}, {"model.st", "model.safetensors"}};
    char src[4200], dst[4200];
    CHECK(mkdir(dir, 0755) == 0);
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/golden/tiny-bert/plain/%s", TEST_SRC_DIR, names[i][0]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i][1]);
        CHECK(symlink(src, dst) == 0);
    }
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4200];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Entries of dir whose names start with '.' (left-over temporary folders). */
static int hidden_entries(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Fills every parameter with values that depend on (salt, tensor, index). */
static void scribble(petl_task_model *tm, float salt) {
    for (size_t i = 0; i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        for (int64_t k = 0; k < p->numel; k++)
            p->data[k] = salt + 0.001f * (float)i + 1e-6f * (float)k;
    }
}

static void check_same(const petl_task_model *a, const petl_task_model *b) {
    CHECK(petl_task_model_num_params(a) == petl_task_model_num_params(b));
    for (size_t i = 0; i < petl_task_model_num_params(a); i++) {
        const petl_param *p = petl_task_model_param(a, i), *q = petl_task_model_param(b, i);
        CHECK(strcmp(p->name, q->name) == 0);
        CHECK(p->numel == q->numel);
        CHECKF(memcmp(p->data, q->data, (size_t)p->numel * sizeof(float)) == 0, "tensor %s",
               p->name);
    }
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

/* Overwrites, in DIR/adapter_config.json, the start of the first occurrence of `find` with
 * `repl` (no longer than it): a key renamed away, a value changed, the file's length kept. */
static void edit_config(const char *dir, const char *find, const char *repl) {
    char q[4200];
    snprintf(q, sizeof q, "%s/%s", dir, PETL_ADAPTER_CONFIG);
    petl_error err = {0};
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(petl_read_file(q, 1 << 20, &text, &len, &err), &err);
    char *at = text ? strstr(text, find) : NULL;
    CHECK(at != NULL && strlen(repl) <= strlen(find));
    if (at) {
        memcpy(at, repl, strlen(repl));
        write_file(q, text, len);
    }
    free(text);
}

static void copy_dir2(const char *src, const char *dst) {
    CHECK(mkdir(dst, 0755) == 0);
    const char *names[] = {PETL_ADAPTER_CONFIG, PETL_ADAPTER_WEIGHTS};
    for (int i = 0; i < 2; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/%s", src, names[i]);
        snprintf(b, sizeof b, "%s/%s", dst, names[i]);
        char *buf = NULL;
        size_t n = 0;
        petl_error err = {0};
        CHECK_OK(petl_read_file(a, 1 << 28, &buf, &n, &err), &err);
        write_file(b, buf, n);
        free(buf);
    }
}

/* Loading dir must fail with status `want` and a message containing `needle`. */
static void expect_load_fail(const char *dir, const petl_model *m, const petl_base_identity *id,
                             petl_status want, const char *needle) {
    petl_adapter_info info;
    petl_task_model *tm = NULL;
    petl_error err = {0};
    petl_status s = petl_adapter_load(dir, m, id, &info, &tm, &err);
    CHECKF(s == want, "%s: status %d (%s), expected %d", dir, s, err.msg, want);
    CHECKF(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    CHECK(tm == NULL);
    printf("  refused as expected: %s\n", err.msg);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/petl-test-adapter-XXXXXX");
    CHECK(mkdtemp(tmp_root) != NULL);
    char model_dir[512], out_parent[512], ad[600], ad2[600];
    snprintf(model_dir, sizeof model_dir, "%s/model", tmp_root);
    snprintf(out_parent, sizeof out_parent, "%s/out", tmp_root);
    snprintf(ad, sizeof ad, "%s/sentiment", out_parent);
    make_model_dir(model_dir);
    CHECK(mkdir(out_parent, 0755) == 0);

    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(model_dir, &m, &err), &err);
    petl_base_identity id;
    petl_base_identity_of(m, &id);
    /* The content hash: stable, and changed by any one float. */
    CHECK(petl_model_content_hash(m) == id.content_hash);
    float keep = m->mem[m->num_params / 2];
    m->mem[m->num_params / 2] = keep + 1e-3f;
    CHECK(petl_model_content_hash(m) != id.content_hash);
    m->mem[m->num_params / 2] = keep;
    CHECK(petl_model_content_hash(m) == id.content_hash);

    petl_tune_config tc;
    petl_tune_config_default(&tc, petl_model_config(m));
    tc.num_labels = 3;
    tc.adapter_size = 4;
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 1, &tm, &err), &err);
    scribble(tm, 0.5f);

    petl_adapter_info info = {0};
    snprintf(info.task_name, sizeof info.task_name, "tsv");
    snprintf(info.task_spec, sizeof info.task_spec, "tsv:text=0,label=1");
    const char *labels[] = {"neg", "neutral", "pos"};
    CHECK_OK(petl_adapter_info_set_labels(&info, labels, 3, &err), &err);
    info.max_len = 32;
    info.tune = tc;
    info.base = id;
    info.training_json = strdup("{\"lr\":0.0003}");

    /* Round trip. */
    CHECK_OK(petl_adapter_save(ad, tm, &info, false, &err), &err);
    CHECK(hidden_entries(out_parent) == 0);
    petl_adapter_info got;
    petl_task_model *tm2 = NULL;
    CHECK_OK(petl_adapter_load(ad, m, &id, &got, &tm2, &err), &err);
    check_same(tm, tm2);
    CHECK(got.n_labels == 3 && !strcmp(got.labels[2], "pos") && !strcmp(got.labels[0], "neg"));
    CHECK(!strcmp(got.task_spec, info.task_spec) && !strcmp(got.task_name, "tsv"));
    CHECK(got.max_len == 32 && !got.regression);
    CHECK(got.tune.tune == tc.tune && got.tune.adapter_size == 4 && got.tune.num_labels == 3);
    /* Only the model's layers are stored: compare those bits. */
    const uint64_t layer_mask = (1ULL << petl_model_config(m)->num_layers) - 1;
    CHECK(got.tune.adapter_layers == (tc.adapter_layers & layer_mask));
    CHECK(got.tune.placement == tc.placement);
    CHECK(got.tune.adapter_init_sd == tc.adapter_init_sd);
    CHECK(got.base.content_hash == id.content_hash && got.base.num_params == id.num_params);
    CHECK(got.training_json && strstr(got.training_json, "lr"));
    petl_adapter_info_free(&got);
    petl_task_model_free(tm2);

    /* No overwrite without force; force replaces. */
    scribble(tm, 0.25f);
    petl_status s = petl_adapter_save(ad, tm, &info, false, &err);
    CHECKF(s == PETL_ERR_IO && strstr(err.msg, "--force"), "%s", err.msg);
    CHECK(hidden_entries(out_parent) == 0);
    CHECK_OK(petl_adapter_save(ad, tm, &info, true, &err), &err);
    CHECK(hidden_entries(out_parent) == 0);
    CHECK_OK(petl_adapter_load(ad, m, &id, &got, &tm2, &err), &err);
    check_same(tm, tm2);
    petl_adapter_info_free(&got);
    petl_task_model_free(tm2);

    /* A failure at every step of a forced save leaves the old adapter complete and no
     * temporary folder behind. */
    petl_task_model *old = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 1, &old, &err), &err);
    scribble(old, 0.25f);
    scribble(tm, 0.75f);
    for (int k = 1; k <= 3; k++) {
        petl_adapter_fail_at = k;
        s = petl_adapter_save(ad, tm, &info, true, &err);
        CHECKF(s == PETL_ERR_IO, "fault %d: status %d", k, s);
        printf("  fault %d: %s\n", k, err.msg);
        CHECK(petl_adapter_fail_at == 0);
        CHECK(hidden_entries(out_parent) == 0);
        CHECK_OK(petl_adapter_load(ad, m, &id, &got, &tm2, &err), &err);
        check_same(old, tm2);
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
    }
    /* The same for a first save: nothing appears at the target. */
    snprintf(ad2, sizeof ad2, "%s/fresh", out_parent);
    petl_adapter_fail_at = 2;
    CHECK(petl_adapter_save(ad2, tm, &info, false, &err) == PETL_ERR_IO);
    CHECK(access(ad2, F_OK) != 0 && hidden_entries(out_parent) == 0);
    /* An empty folder made beforehand is not an adapter: no --force needed. */
    CHECK(mkdir(ad2, 0755) == 0);
    CHECK_OK(petl_adapter_save(ad2, tm, &info, false, &err), &err);
    rm_rf(ad2);

    /* Another base: refused, naming what differs. */
    petl_base_identity other = id;
    other.content_hash ^= 1;
    expect_load_fail(ad, m, &other, PETL_ERR_ARG, "content_hash");
    other = id;
    other.hidden_size *= 2;
    expect_load_fail(ad, m, &other, PETL_ERR_ARG, "hidden_size");

    /* The tokenizer is part of the identity: recorded on save, compared on load when both sides
     * know it (an adapter from before it was recorded, or a caller without a tokenizer, skips
     * the comparison). */
    {
        static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\ncat\n";
        static const char vocab2[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\ndog\n";
        petl_tokenizer_opts cased;
        petl_tokenizer_opts_default(&cased);
        cased.lowercase = false;
        petl_tokenizer *t1 = NULL, *t2 = NULL, *t3 = NULL;
        CHECK_OK(petl_tokenizer_from_vocab(vocab, sizeof vocab - 1, "v1", NULL, &t1, &err), &err);
        CHECK_OK(petl_tokenizer_from_vocab(vocab, sizeof vocab - 1, "v1", &cased, &t2, &err), &err);
        CHECK_OK(petl_tokenizer_from_vocab(vocab2, sizeof vocab2 - 1, "v2", NULL, &t3, &err), &err);
        CHECK(petl_tokenizer_vocab_hash(t1) == petl_tokenizer_vocab_hash(t2));
        CHECK(petl_tokenizer_vocab_hash(t1) != petl_tokenizer_vocab_hash(t3));
        petl_base_identity idt = id, idcased = id, idv2 = id;
        petl_base_identity_set_tokenizer(&idt, t1);
        petl_base_identity_set_tokenizer(&idcased, t2);
        petl_base_identity_set_tokenizer(&idv2, t3);
        CHECK(idt.lowercase && idt.strip_accents && !idcased.lowercase && !idcased.strip_accents);
        snprintf(ad2, sizeof ad2, "%s/with-tokenizer", tmp_root);
        info.base = idt;
        CHECK_OK(petl_adapter_save(ad2, tm, &info, false, &err), &err);
        info.base = id;
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/%s", ad2, PETL_ADAPTER_CONFIG);
        char *text = NULL;
        size_t tn = 0;
        CHECK_OK(petl_read_file(cfg, 1 << 20, &text, &tn, &err), &err);
        CHECK(strstr(text, "\"tokenizer\"") && strstr(text, "\"vocab_hash\""));
        free(text);
        CHECK_OK(petl_adapter_load(ad2, m, &idt, &got, &tm2, &err), &err);
        CHECK(got.base.has_tokenizer && got.base.vocab_hash == idt.vocab_hash &&
              got.base.lowercase && got.base.strip_accents && got.base.clean_text);
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &tm2, &err), &err); /* caller without */
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        CHECK_OK(petl_adapter_load(ad, m, &idt, &got, &tm2, &err), &err); /* adapter without */
        CHECK(!got.base.has_tokenizer);
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        expect_load_fail(ad2, m, &idcased, PETL_ERR_ARG, "tokenizer lowercase true (adapter)");
        expect_load_fail(ad2, m, &idv2, PETL_ERR_ARG, "vocab_hash");
        rm_rf(ad2);
        petl_tokenizer_free(t1);
        petl_tokenizer_free(t2);
        petl_tokenizer_free(t3);
    }

    /* Damaged files. */
    char p[4200], q[4200];
    snprintf(ad2, sizeof ad2, "%s/damaged", tmp_root);
    copy_dir2(ad, ad2);
    snprintf(p, sizeof p, "%s/%s", ad2, PETL_ADAPTER_WEIGHTS);
    char *buf = NULL;
    size_t n = 0;
    CHECK_OK(petl_read_file(p, 1 << 28, &buf, &n, &err), &err);
    buf[n - 3] ^= 0x40; /* a bit of the last float */
    write_file(p, buf, n);
    expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, "damaged");
    write_file(p, buf, n / 2); /* truncated */
    expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, PETL_ADAPTER_WEIGHTS);
    free(buf);
    snprintf(q, sizeof q, "%s/%s", ad2, PETL_ADAPTER_CONFIG);
    write_file(q, "{\"format\": \"petl-adapter\",", 26);
    expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, "invalid JSON");
    unlink(q);
    expect_load_fail(ad2, m, &id, PETL_ERR_IO, PETL_ADAPTER_CONFIG);
    rm_rf(ad2);

    /* A missing tensor, a misshapen one, and an extra one. */
    copy_dir2(ad, ad2);
    size_t np = petl_task_model_num_params(tm);
    petl_st_entry *ents = calloc(np + 1, sizeof *ents);
    CHECK(ents != NULL);
    for (size_t i = 0; i < np; i++) {
        const petl_param *pp = petl_task_model_param(tm, i);
        ents[i] = (petl_st_entry){pp->name, PETL_DT_F32, pp->rank, pp->shape, pp->data};
    }
    CHECK_OK(petl_st_write(p, ents + 1, np - 1, NULL, 0, &err), &err);
    expect_load_fail(ad2, m, &id, PETL_ERR_SHAPE, petl_task_model_param(tm, 0)->name);
    int64_t bad_shape[2] = {0, 0};
    const petl_param *p0 = petl_task_model_param(tm, 0);
    bad_shape[0] = p0->rank == 1 ? p0->shape[0] - 1 : p0->shape[1];
    bad_shape[1] = p0->rank == 1 ? 0 : p0->shape[0];
    ents[0].shape = bad_shape;
    CHECK_OK(petl_st_write(p, ents, np, NULL, 0, &err), &err);
    expect_load_fail(ad2, m, &id, PETL_ERR_SHAPE, "expected");
    ents[0].shape = p0->shape;
    int64_t one = 1;
    float extra = 0;
    ents[np] = (petl_st_entry){"bert.encoder.layer.0.surprise", PETL_DT_F32, 1, &one, &extra};
    CHECK_OK(petl_st_write(p, ents, np + 1, NULL, 0, &err), &err);
    expect_load_fail(ad2, m, &id, PETL_ERR_SHAPE, "surprise");

    /* NaN or Inf in any tensor, written without the content hash (which would also catch it):
     * refused at load, naming the file and the tensor (issue 16, item 8). */
    for (size_t k = 0; k < np; k += np - 1) { /* the first and the last tensor */
        const petl_param *pk = petl_task_model_param(tm, k);
        float *copy = malloc((size_t)pk->numel * sizeof *copy);
        CHECK(copy != NULL);
        memcpy(copy, pk->data, (size_t)pk->numel * sizeof *copy);
        ents[k].data = copy;
        for (int v = 0; v < 3; v++) {
            copy[pk->numel - 1] = v == 0 ? NAN : v == 1 ? INFINITY : -INFINITY;
            CHECK_OK(petl_st_write(p, ents, np, NULL, 0, &err), &err);
            expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, pk->name);
            expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, v == 0 ? "NaN" : "Inf");
            expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, PETL_ADAPTER_WEIGHTS);
        }
        ents[k].data = pk->data;
        free(copy);
    }
    /* the same tensors, finite again and still without the hash: loads */
    CHECK_OK(petl_st_write(p, ents, np, NULL, 0, &err), &err);
    CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &tm2, &err), &err);
    check_same(tm, tm2);
    petl_adapter_info_free(&got);
    petl_task_model_free(tm2);
    free(ents);
    rm_rf(ad2);

    /* The input shape and the train file's width round trip (issue 16, item 9); a config from
     * before pair_input derives it from the task spec; two labels of one name are refused. */
    {
        petl_adapter_info pi = {0};
        snprintf(pi.task_name, sizeof pi.task_name, "tsv");
        snprintf(pi.task_spec, sizeof pi.task_spec, "tsv:text=1,text_b=2,label=0");
        CHECK_OK(petl_adapter_info_set_labels(&pi, labels, 3, &err), &err);
        const char *dup[] = {"neg", "pos", "neg"};
        CHECK(petl_adapter_info_set_labels(&pi, dup, 3, &err) == PETL_ERR_ARG &&
              strstr(err.msg, "\"neg\" twice"));
        CHECK_OK(petl_adapter_info_set_labels(&pi, labels, 3, &err), &err);
        pi.max_len = 32;
        pi.tune = tc;
        pi.base = id;
        pi.pair_input = true;
        pi.data_columns = 3;
        snprintf(ad2, sizeof ad2, "%s/pair", out_parent);
        CHECK_OK(petl_adapter_save(ad2, tm, &pi, false, &err), &err);
        CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &tm2, &err), &err);
        CHECK(got.pair_input && got.data_columns == 3);
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        CHECK_OK(petl_adapter_load(ad, m, &id, &got, &tm2, &err), &err);
        CHECK(!got.pair_input && got.data_columns == 0); /* tsv:text=0,label=1, not recorded */
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        /* as if written before petl recorded it */
        edit_config(ad2, "\"pair_input\": true", "\"pair_inpvt");
        CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &tm2, &err), &err);
        CHECK(got.pair_input); /* from the spec's text_b */
        petl_adapter_info_free(&got);
        petl_task_model_free(tm2);
        edit_config(ad2, "\"neutral\"", "\"pos\"    "); /* labels neg, pos, pos */
        expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, "both \"pos\"");
        rm_rf(ad2);
        petl_adapter_info_free(&pi);
    }

    /* A span head (SQuAD): qa_outputs instead of classifier and pooler, no labels, the squad
     * settings and held-out articles round trip; a span config without its "squad" settings is
     * refused; a config from before span heads (no tune.head) is a classification head. */
    {
        petl_tune_config sc = tc;
        sc.head = PETL_HEAD_SPAN;
        sc.tune = PETL_TUNE_FULL; /* the pooler would be trained for classification */
        petl_task_model *sm = NULL, *sm2 = NULL;
        CHECK_OK(petl_task_model_new(m, &sc, 1, &sm, &err), &err);
        CHECK(petl_task_model_find(sm, "qa_outputs.weight") != NULL);
        CHECK(petl_task_model_find(sm, "qa_outputs.bias")->numel == 2);
        CHECK(!petl_task_model_find(sm, "classifier.weight"));
        CHECK(!petl_task_model_find(sm, "bert.pooler.dense.weight"));
        CHECK(petl_task_model_tune_config(sm)->num_labels == 2);
        scribble(sm, 0.125f);
        petl_adapter_info si = {0};
        snprintf(si.task_name, sizeof si.task_name, "squad");
        snprintf(si.task_spec, sizeof si.task_spec, "squad");
        si.max_len = 96;
        si.tune = *petl_task_model_tune_config(sm);
        si.base = id;
        si.squad = (petl_squad_params){96, 20, 40, 7, 11};
        snprintf(si.squad_eval_articles, sizeof si.squad_eval_articles, "38:48");
        snprintf(ad2, sizeof ad2, "%s/squad", out_parent);
        CHECK_OK(petl_adapter_save(ad2, sm, &si, false, &err), &err);
        CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &sm2, &err), &err);
        check_same(sm, sm2);
        CHECK(got.tune.head == PETL_HEAD_SPAN && got.n_labels == 0 && got.tune.num_labels == 2);
        CHECK(got.squad.max_seq_len == 96 && got.squad.max_query_len == 20 &&
              got.squad.doc_stride == 40 && got.squad.n_best == 7 &&
              got.squad.max_answer_len == 11);
        CHECK(!strcmp(got.squad_eval_articles, "38:48"));
        petl_adapter_info_free(&got);
        petl_task_model_free(sm2);
        /* without "squad": refused, naming the key */
        edit_config(ad2, "\"squad\": {", "\"sqvad");
        expect_load_fail(ad2, m, &id, PETL_ERR_FORMAT, "\"squad\" is missing");
        rm_rf(ad2);
        petl_adapter_info_free(&si);
        petl_task_model_free(sm);
        /* the classification adapter saved above, its "head" key removed */
        copy_dir2(ad, ad2);
        edit_config(ad2, "\"head\": \"classify\"", "\"hexd\"");
        CHECK_OK(petl_adapter_load(ad2, m, &id, &got, &sm2, &err), &err);
        CHECK(got.tune.head == PETL_HEAD_CLASSIFY && got.n_labels == 3);
        petl_adapter_info_free(&got);
        petl_task_model_free(sm2);
        rm_rf(ad2);
    }

    petl_adapter_info_free(&info);
    petl_task_model_free(old);
    petl_task_model_free(tm);
    petl_model_free(m);
    rm_rf(tmp_root);
    CHECK_DONE("test_adapter_io");
}
