/* The batcher (src/batcher.c): every example exactly once per epoch, plans a pure function of
 * (seed, epoch), batches grouped by length (far less padding than a plain shuffle), eval plans
 * sorted with the order mapping back to the input, and padding filled as the encoder needs. */
#include "batcher.h"
#include "check.h"
#include "rng.h"

#include <stdlib.h>

/* Sum over batches of (rows x longest row - real tokens). */
static int64_t padding(const petl_batcher *b, const petl_batch_plan *pl) {
    int64_t pad = 0;
    for (size_t k = 0; k < pl->n_batches; k++) {
        int mx = 0;
        int64_t real = 0;
        for (size_t r = pl->start[k]; r < pl->start[k + 1]; r++) {
            int L = petl_batcher_length(b, (size_t)pl->order[r]);
            mx = L > mx ? L : mx;
            real += L;
        }
        pad += (int64_t)(pl->start[k + 1] - pl->start[k]) * mx - real;
    }
    return pad;
}

static void check_once(const petl_batch_plan *pl, size_t n, int batch) {
    CHECK(pl->n_batches == petl_batcher_epoch_batches(n, batch));
    CHECK(pl->start[0] == 0 && pl->start[pl->n_batches] == n);
    char *seen = calloc(n, 1);
    CHECK(seen != NULL);
    int short_batches = 0;
    for (size_t k = 0; k < pl->n_batches; k++) {
        size_t rows = pl->start[k + 1] - pl->start[k];
        CHECK(rows >= 1 && rows <= (size_t)batch);
        short_batches += rows < (size_t)batch;
    }
    CHECK(short_batches <= 1);
    for (size_t i = 0; i < n; i++) {
        CHECK(pl->order[i] >= 0 && (size_t)pl->order[i] < n);
        CHECKF(!seen[pl->order[i]], "example %lld twice", (long long)pl->order[i]);
        seen[pl->order[i]] = 1;
    }
    free(seen);
}

int main(void) {
    petl_error err = {0};
    petl_tokenizer *tok = NULL;
    CHECK_OK(petl_tokenizer_load(test_model_dir(), &tok, &err), &err);

    /* 2000 sentences of 1..60 words, labels 0 / 1, and a few pairs. */
    const char *words[] = {"the", "film", "is", "good", "bad", "very", "quite", "a", "story"};
    petl_batcher *b = NULL;
    CHECK(petl_batcher_new(tok, 2, &b, &err) == PETL_ERR_ARG);
    CHECK_OK(petl_batcher_new(tok, 48, &b, &err), &err);
    petl_rng r;
    petl_rng_seed(&r, 5);
    char text[1024];
    const size_t N = 2000;
    for (size_t i = 0; i < N; i++) {
        size_t nw = 1 + petl_rng_below(&r, 60), len = 0;
        for (size_t w = 0; w < nw; w++)
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", w ? " " : "",
                                    words[petl_rng_below(&r, 9)]);
        if (i % 10 == 0)
            CHECK_OK(petl_batcher_add(b, text, len, "and a second one", 16, (int32_t)(i % 2),
                                      (float)i, &err),
                     &err);
        else
            CHECK_OK(petl_batcher_add(b, text, len, NULL, 0, (int32_t)(i % 2), (float)i, &err),
                     &err);
    }
    CHECK(petl_batcher_count(b) == N);
    int64_t total = 0;
    for (size_t i = 0; i < N; i++) {
        int L = petl_batcher_length(b, i);
        CHECK(L >= 3 && L <= 48); /* truncated to max_len */
        CHECK(petl_batcher_label(b, i) == (int32_t)(i % 2));
        CHECK(petl_batcher_target(b, i) == (float)i);
        total += L;
    }
    CHECK(total == petl_batcher_total_tokens(b));

    /* Training plans: each example once, deterministic in (seed, epoch), different across
     * epochs and seeds, and far less padding than a plain shuffle. */
    const int B = 16;
    petl_batch_plan p1, p2, p3, p4;
    CHECK_OK(petl_batcher_plan_train(b, B, 42, 0, &p1, &err), &err);
    CHECK_OK(petl_batcher_plan_train(b, B, 42, 0, &p2, &err), &err);
    CHECK_OK(petl_batcher_plan_train(b, B, 42, 1, &p3, &err), &err);
    CHECK_OK(petl_batcher_plan_train(b, B, 43, 0, &p4, &err), &err);
    check_once(&p1, N, B);
    check_once(&p3, N, B);
    check_once(&p4, N, B);
    CHECK(memcmp(p1.order, p2.order, N * sizeof *p1.order) == 0);
    CHECK(memcmp(p1.start, p2.start, (p1.n_batches + 1) * sizeof *p1.start) == 0);
    CHECK(memcmp(p1.order, p3.order, N * sizeof *p1.order) != 0);
    CHECK(memcmp(p1.order, p4.order, N * sizeof *p1.order) != 0);
    /* The batch order is shuffled too: the first batch is not always the longest. */
    CHECK(p1.order[0] != p3.order[0] || p1.order[0] != p4.order[0]);
    petl_batch_plan plain = p4;
    int64_t *shuf = malloc(N * sizeof *shuf);
    CHECK(shuf != NULL);
    for (size_t i = 0; i < N; i++) shuf[i] = (int64_t)i;
    petl_rng_shuffle(&r, shuf, N);
    plain.order = shuf;
    plain.start = p1.start; /* the same batch sizes, in input order */
    int64_t pad_grouped = padding(b, &p1), pad_plain = padding(b, &plain);
    printf("  padding: %lld tokens grouped vs %lld shuffled (%lld real)\n",
           (long long)pad_grouped, (long long)pad_plain, (long long)total);
    CHECK(pad_grouped * 5 < pad_plain);
    free(shuf);

    /* Eval plan: sorted by length, all examples once. */
    petl_batch_plan pe;
    CHECK_OK(petl_batcher_plan_eval(b, 64, &pe, &err), &err);
    check_once(&pe, N, 64);
    for (size_t i = 1; i < N; i++)
        CHECK(petl_batcher_length(b, (size_t)pe.order[i - 1]) >=
              petl_batcher_length(b, (size_t)pe.order[i]));

    /* Filling: rows padded to the longest with the pad id and type 0. */
    petl_batch_buf buf;
    CHECK_OK(petl_batch_buf_init(&buf, B, 48, &err), &err);
    const int64_t rows[3] = {0, 1, 10}; /* 10 is a pair */
    CHECK_OK(petl_batcher_fill(b, rows, 3, false, &buf, &err), &err);
    int mx = 0;
    for (int i = 0; i < 3; i++) {
        int L = petl_batcher_length(b, (size_t)rows[i]);
        mx = L > mx ? L : mx;
        CHECK(buf.lengths[i] == L);
        CHECK(buf.labels[i] == petl_batcher_label(b, (size_t)rows[i]));
    }
    CHECK(buf.batch.batch == 3 && buf.batch.seq == mx);
    const int32_t pad = petl_tokenizer_pad_id(tok), cls = petl_tokenizer_token_to_id(tok, "[CLS]");
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < mx; t++) {
            int32_t id = buf.ids[i * mx + t], ty = buf.type_ids[i * mx + t];
            if (t == 0) CHECK(id == cls);
            if (t >= buf.lengths[i]) CHECK(id == pad && ty == 0);
        }
    bool has_type1 = false;
    for (int t = 0; t < buf.lengths[2]; t++) has_type1 |= buf.type_ids[2 * mx + t] == 1;
    CHECK(has_type1);
    CHECK_OK(petl_batcher_fill(b, rows, 3, true, &buf, &err), &err);
    CHECK(buf.batch.seq == 48);
    const int64_t bad[1] = {(int64_t)N};
    CHECK(petl_batcher_fill(b, bad, 1, false, &buf, &err) == PETL_ERR_ARG);

    /* Clearing keeps nothing. */
    petl_batcher_clear(b);
    CHECK(petl_batcher_count(b) == 0 && petl_batcher_total_tokens(b) == 0);

    /* Pre-tokenized examples with span targets (SQuAD windows): kept as given, the targets
     * travel with their rows; too long or a target outside the row is refused. */
    {
        int32_t ids[48], types[48];
        for (int t = 0; t < 48; t++)
            ids[t] = 1000 + t, types[t] = t >= 5;
        CHECK_OK(petl_batcher_add_encoded(b, ids, types, 12, 6, 9, &err), &err);
        CHECK_OK(petl_batcher_add_encoded(b, ids, types, 30, 0, 0, &err), &err);
        CHECK_OK(petl_batcher_add_encoded(b, ids, types, 7, -1, -1, &err), &err);
        CHECK(petl_batcher_add_encoded(b, ids, types, 49, 0, 0, &err) == PETL_ERR_ARG);
        CHECK(petl_batcher_add_encoded(b, ids, types, 7, 2, 7, &err) == PETL_ERR_ARG);
        CHECK(petl_batcher_count(b) == 3 && petl_batcher_span_end(b, 0) == 9);
        const int64_t rows3[3] = {2, 0, 1};
        CHECK_OK(petl_batcher_fill(b, rows3, 3, false, &buf, &err), &err);
        CHECK(buf.batch.seq == 30 && buf.lengths[1] == 12 && buf.tokens == 49);
        CHECK(buf.starts[0] == -1 && buf.starts[1] == 6 && buf.ends[1] == 9 && buf.ends[2] == 0);
        CHECK(buf.ids[30 + 11] == 1011 && buf.type_ids[30 + 5] == 1 && buf.ids[30 + 12] == pad);
        /* text examples get no span */
        CHECK_OK(petl_batcher_add(b, "a film", 6, NULL, 0, 1, 0.0f, &err), &err);
        CHECK(petl_batcher_span_start(b, 3) == -1 && petl_batcher_span_end(b, 3) == -1);
        petl_batcher_clear(b);
    }

    petl_batch_buf_free(&buf);
    petl_batch_plan_free(&p1);
    petl_batch_plan_free(&p2);
    petl_batch_plan_free(&p3);
    petl_batch_plan_free(&p4);
    petl_batch_plan_free(&pe);
    petl_batcher_free(b);
    petl_tokenizer_free(tok);
    CHECK_DONE("test_batcher");
}
