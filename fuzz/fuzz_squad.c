/* libFuzzer target: any bytes through the SQuAD reader (petl_squad_parse). The first byte picks
 * the options (article range, unanswered questions allowed). An accepted file must satisfy what
 * featurizing and scoring rely on: every answer lies inside its context and reads as its text,
 * ids and texts are NUL-terminated at their lengths, contexts are in range. */
#include "petl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    o.allow_unanswered = data[0] & 1;
    if (data[0] & 2) o.article_begin = (data[0] >> 2) & 3;
    if (data[0] & 16) o.article_end = o.article_begin + ((data[0] >> 5) & 3);
    petl_squad *ds = NULL;
    petl_error err;
    if (petl_squad_parse((const char *)data + 1, size - 1, "fuzz", &o, &ds, &err) != PETL_OK) {
        if (ds || !memchr(err.msg, '\0', sizeof err.msg)) abort();
        return 0;
    }
    for (size_t i = 0; i < petl_squad_count(ds); i++) {
        const petl_squad_question *q = petl_squad_at(ds, i);
        const petl_squad_context *c = petl_squad_context_at(ds, q->context);
        if (!c || strlen(c->text) != c->len || strlen(q->question) != q->question_len) abort();
        if (!q->id || (q->n_answers == 0 && !o.allow_unanswered)) abort();
        if (q->article < (size_t)o.article_begin) abort();
        for (size_t k = 0; k < q->n_answers; k++) {
            const petl_squad_answer *a = &q->answers[k];
            if (a->len == 0 || a->begin + a->len > c->len) abort();
            if (memcmp(c->text + a->begin, a->text, a->len) != 0) abort();
        }
        /* The metric on the file's own strings never fails. */
        double em = 0, f1 = 0;
        if (q->n_answers > 0 &&
            (petl_squad_f1(q->question, q->question_len, q->answers[0].text, q->answers[0].len, &f1,
                           &err) != PETL_OK ||
             petl_squad_em(q->answers[0].text, q->answers[0].len, q->answers[0].text,
                           q->answers[0].len, &em, &err) != PETL_OK ||
             em != 1.0 || f1 < 0 || f1 > 1))
            abort();
    }
    petl_squad_free(ds);
    return 0;
}
