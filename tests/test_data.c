/* Task data reader: every real GLUE file in test_data_dir()/glue (exact row counts, first and
 * last rows, label distributions, load time), the official layouts of the tasks whose files
 * are not here (QQP, MNLI, QNLI, WNLI) on small files written in those layouts, the generic
 * TSV / CSV / JSON-lines formats, and bad input, each error naming file and line. */
#include "check.h"
#include "petl.h"

#include <math.h>
#include <unistd.h>

static char tmpdir[256];

/* ------------------------------------------------------------------------------ helpers */

static petl_task task(const char *name) {
    petl_task t;
    petl_error err;
    CHECK_OK(petl_task_lookup(name, &t, &err), &err);
    return t;
}

/* Writes content[len] to tmpdir/name; returns the path in a static buffer. */
static const char *write_file(const char *name, const char *content, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot write %s", path);
    CHECK(fwrite(content, 1, len, f) == len);
    CHECK(fclose(f) == 0);
    return path;
}

/* Loads `content` (a C string) as file `name` with task spec `spec`; must succeed. */
static petl_dataset *load_str(const char *spec, const char *name, const char *content,
                              const char *const *labels, size_t n_labels) {
    petl_task t = task(spec);
    petl_dataset *ds = NULL;
    petl_error err;
    const char *path = write_file(name, content, strlen(content));
    CHECK_OK(petl_dataset_load(&t, path, labels, n_labels, &ds, &err), &err);
    return ds;
}

/* Loading must fail with `code` and a message holding `want` (e.g. "bad.tsv:3:"). */
static void expect_fail(const char *spec, const char *content, size_t len, petl_status code,
                        const char *want) {
    petl_task t = task(spec);
    petl_dataset *ds = (petl_dataset *)1;
    petl_error err = {PETL_OK, ""};
    const char *path = write_file("bad.tsv", content, len);
    petl_status st = petl_dataset_load(&t, path, NULL, 0, &ds, &err);
    CHECKF(st == code, "%s: got status %d (%s), want %d", spec, (int)st, err.msg, (int)code);
    CHECKF(ds == NULL, "%s: *out not cleared on failure", spec);
    CHECKF(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", spec, err.msg, want);
}
#define EXPECT_FAIL(spec, str, code, want) expect_fail(spec, str, sizeof(str) - 1, code, want)

static const petl_example *ex(const petl_dataset *ds, size_t i) {
    const petl_example *e = petl_dataset_at(ds, i);
    CHECK(e != NULL);
    return e;
}

static bool text_is(const char *got, const char *want) {
    return got && want && strcmp(got, want) == 0;
}

/* ------------------------------------------------------------------- real GLUE files */

typedef struct {
    const char *task, *dir, *split;
    size_t n;
    size_t first_line;
    const char *first_a, *first_b, *first_label;
    size_t last_line;
    const char *last_a, *last_label;
    size_t count0, count1; /* rows of class 0 and 1 (classification) */
    double target_sum;     /* STS-B: sum of scores */
} glue_file;

static const glue_file GLUE_FILES[] = {
    {"sst2", "SST-2", "train", 67349, 2, "hide new secretions from the parental units ", NULL, "0",
     67350,
     "this new jangle of noise , mayhem and stupidity must be a serious contender for the "
     "title . ",
     "0", 29780, 37569, 0},
    {"sst2", "SST-2", "dev", 872, 2, "it 's a charming and often affecting journey . ", NULL, "1",
     873,
     "looking aristocratic , luminous yet careworn in jane hamilton 's exemplary costumes , "
     "rampling gives a performance that could not be improved upon . ' ",
     "1", 428, 444, 0},
    {"cola", "CoLA", "train", 8551, 1,
     "Our friends won't buy this analysis, let alone the next one we propose.", NULL, "1", 8551,
     "What all did you get for Christmas?", "1", 2528, 6023, 0},
    {"cola", "CoLA", "dev", 1043, 1, "The sailors rode the breeze clear of the rocks.", NULL, "1",
     1043, "John talked to Bill about himself.", "1", 322, 721, 0},
    {"mrpc", "MRPC", "train", 3668, 2,
     "Amrozi accused his brother , whom he called \" the witness \" , of deliberately "
     "distorting his evidence .",
     "Referring to him as only \" the witness \" , Amrozi accused his brother of deliberately "
     "distorting his evidence .",
     "1", 3669,
     "The 30-year bond US30YT = RR rose 22 / 32 for a yield of 4.31 percent , versus 4.35 "
     "percent at Wednesday 's close .",
     "0", 1194, 2474, 0},
    {"mrpc", "MRPC", "dev", 408, 2,
     "He said the foodservice pie business doesn 't fit the company 's long-term growth "
     "strategy .",
     "\" The foodservice pie business does not fit our long-term growth strategy .", "1", 409,
     "Ex-KGB agent Putin added that the Beatles were considered ' propaganda of an alien "
     "ideology ' .",
     "1", 129, 279, 0},
    {"rte", "RTE", "train", 2490, 2, "No Weapons of Mass Destruction Found in Iraq Yet.",
     "Weapons of Mass Destruction Found in Iraq.", "not_entailment", 2491,
     "Turkey is unlikely to become involved in, or allow U.S. forces to use Turkish territory "
     "in a Middle East war that does not threaten her territory directly.",
     "not_entailment", 1249, 1241, 0},
    {"rte", "RTE", "dev", 277, 2,
     "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
     "according to the Christopher Reeve Foundation.",
     "Christopher Reeve had an accident.", "not_entailment", 278, NULL, "not_entailment", 146, 131,
     0},
    {"stsb", "STS-B", "train", 5749, 2, "A plane is taking off.", "An air plane is taking off.",
     NULL, 5750, "Putin spokesman: Doping charges appear unfounded", NULL, 0, 0,
     15528.043396825336},
    {"stsb", "STS-B", "dev", 1500, 2, "A man with a hard hat is dancing.",
     "A man wearing a hard hat is dancing.", NULL, 1501,
     "New video shows US police officers beating mentally-ill man", NULL, 0, 0, 3545.8613333333324},
};

static void check_classes(const petl_dataset *ds, const glue_file *g) {
    size_t n = petl_dataset_count(ds), counts[8] = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t l = ex(ds, i)->label;
        CHECK(l >= 0 && (size_t)l < petl_dataset_num_labels(ds));
        counts[l]++;
    }
    CHECKF(counts[0] == g->count0 && counts[1] == g->count1, "%s/%s: classes %zu / %zu", g->dir,
           g->split, counts[0], counts[1]);
    const char *const *names = petl_dataset_labels(ds);
    CHECK(text_is(names[ex(ds, 0)->label], g->first_label));
    CHECK(text_is(names[ex(ds, n - 1)->label], g->last_label));
}

static void check_glue_file(const glue_file *g) {
    char path[1024];
    snprintf(path, sizeof path, "%s/glue/%s/%s.tsv", test_data_dir(), g->dir, g->split);
    petl_task t = task(g->task);
    petl_dataset *ds;
    petl_error err;
    double t0 = petl_now();
    CHECK_OK(petl_dataset_load(&t, path, NULL, 0, &ds, &err), &err);
    double dt = petl_now() - t0;
    size_t n = petl_dataset_count(ds);
    CHECKF(n == g->n, "%s: %zu examples, want %zu", path, n, g->n);
    CHECKF(dt < 1.0, "%s: load took %.3f s", path, dt);
    printf("  %-6s %-5s %6zu examples in %.1f ms\n", g->dir, g->split, n, 1e3 * dt);
    CHECK(petl_dataset_skipped(ds) == 0 && petl_dataset_examples(ds) == ex(ds, 0));
    const petl_example *first = ex(ds, 0), *last = ex(ds, n - 1);
    CHECKF(text_is(first->text_a, g->first_a), "%s: first text '%s'", path, first->text_a);
    CHECK(first->len_a == strlen(g->first_a) && first->line == g->first_line);
    CHECK(g->first_b ? text_is(first->text_b, g->first_b) : first->text_b == NULL);
    CHECK(last->line == g->last_line);
    if (g->last_a) CHECKF(text_is(last->text_a, g->last_a), "%s: last '%s'", path, last->text_a);
    CHECK(petl_dataset_at(ds, n) == NULL);
    if (t.regression) {
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += ex(ds, i)->target;
        CHECKF(fabs(sum - g->target_sum) < 1e-6, "%s: target sum %.9f", path, sum);
        CHECK(first->target == 5.0 && last->target == 0.0 && first->label == -1);
        CHECK(petl_dataset_is_regression(ds) && petl_dataset_num_labels(ds) == 0);
    } else {
        check_classes(ds, g);
    }
    petl_dataset_free(ds);
}

static void test_real_glue(void) {
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/glue/SST-2/train.tsv", test_data_dir());
    if (access(probe, R_OK) != 0) {
        test_skip("data", "no GLUE data at %s/glue: real-file checks not run", test_data_dir());
        return;
    }
    for (size_t i = 0; i < sizeof GLUE_FILES / sizeof GLUE_FILES[0]; i++)
        check_glue_file(&GLUE_FILES[i]);

    /* Dev with the train set's labels: same indices. */
    char path[1024];
    petl_task t = task("rte");
    petl_dataset *train, *dev;
    petl_error err;
    snprintf(path, sizeof path, "%s/glue/RTE/train.tsv", test_data_dir());
    CHECK_OK(petl_dataset_load(&t, path, NULL, 0, &train, &err), &err);
    snprintf(path, sizeof path, "%s/glue/RTE/dev.tsv", test_data_dir());
    CHECK_OK(petl_dataset_load(&t, path, petl_dataset_labels(train), petl_dataset_num_labels(train),
                               &dev, &err),
             &err);
    CHECK(petl_dataset_count(dev) == 277 && petl_dataset_label_index(dev, "entailment") == 0);
    CHECK(petl_dataset_label_index(dev, "not_entailment") == 1);
    CHECK(petl_dataset_label_index(dev, "neutral") == -1);
    petl_dataset_free(train);
    petl_dataset_free(dev);
}

/* --------------------------------------------------------------------- task lookup */

static void test_lookup(void) {
    const char *names[] = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"};
    for (size_t i = 0; i < 9; i++) {
        petl_task t = task(names[i]);
        CHECK(strcmp(t.name, names[i]) == 0 && t.glue && t.format == PETL_FMT_TSV);
        CHECK(t.n_metrics >= 1 && t.regression == (i == 3) && t.header == (i != 0));
    }
    CHECK(strcmp(task("SST-2").name, "sst2") == 0 && strcmp(task("STS-B").name, "stsb") == 0);
    CHECK(strcmp(task("CoLA").name, "cola") == 0 && strcmp(task("MNLI").name, "mnli") == 0);
    petl_task m = task("mnli");
    CHECK(m.n_labels == 3 && strcmp(m.labels[0], "contradiction") == 0);
    CHECK(strcmp(m.labels[1], "entailment") == 0 && strcmp(m.labels[2], "neutral") == 0);
    CHECK(strcmp(petl_task_split_file(&m, "train"), "train.tsv") == 0);
    CHECK(strcmp(petl_task_split_file(&m, "dev"), "dev_matched.tsv") == 0);
    CHECK(strcmp(petl_task_split_file(&m, "dev_matched"), "dev_matched.tsv") == 0);
    CHECK(strcmp(petl_task_split_file(&m, "dev_mismatched"), "dev_mismatched.tsv") == 0);
    petl_task s = task("sst2");
    CHECK(strcmp(petl_task_split_file(&s, "dev"), "dev.tsv") == 0);
    CHECK(petl_task_split_file(&s, "dev_mismatched") == NULL);
    CHECK(petl_task_split_file(&s, "test") == NULL);
    petl_task q = task("qqp");
    CHECK(q.skip_short_rows && q.n_metrics == 2 && q.metrics[1] == PETL_METRIC_F1);
    CHECK(task("cola").metrics[0] == PETL_METRIC_MCC && task("stsb").n_labels == 0);

    petl_task g = task("csv:text=review,text_b=title,label=stars,header");
    CHECK(g.format == PETL_FMT_CSV && g.header && !g.glue && g.col_a == PETL_COL_BYNAME);
    CHECK(strcmp(g.name_b, "title") == 0 &&
          strcmp(petl_task_split_file(&g, "dev"), "dev.csv") == 0);
    g = task("tsv:text_a=2,label=0,regression");
    CHECK(g.col_a == 2 && g.col_b == PETL_COL_NONE && g.col_label == 0 && g.regression);
    CHECK(g.n_metrics == 3 && g.metrics[0] == PETL_METRIC_PEARSON);
    g = task("jsonl:text=0,label=y");
    CHECK(g.format == PETL_FMT_JSONL && strcmp(g.name_a, "0") == 0);
    CHECK(strcmp(petl_task_split_file(&g, "train"), "train.jsonl") == 0);

    const char *bad[] = {"foo",
                         "",
                         "tsv",
                         "tsv:text=0",
                         "tsv:label=1",
                         "xml:text=0,label=1",
                         "tsv:text=0,label=1,bogus",
                         "tsv:text=0,label=1,text=2",
                         "tsv:text=a,label=b",
                         "tsv:text=,label=1",
                         "tsv:text=9999999,label=1",
                         "tsv:color=1,text=0,label=1",
                         "mnli-mm"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        petl_task t;
        petl_error err = {PETL_OK, ""};
        CHECKF(petl_task_lookup(bad[i], &t, &err) == PETL_ERR_ARG, "'%s' accepted", bad[i]);
        CHECK(err.msg[0] != '\0');
    }
}

/* ------------------------------------------------------------- official layouts */

static const char *const QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n";

static void test_qqp(void) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "%s"
             "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of "
             "prepration is enough?\t0\n"
             "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control "
             "your horniness?\t1\n"
             "201841\t303951\t174364\tWhat can one do after MBBS?\t0\n" /* question2 lost */
             "1\t2\n"                                                   /* cut short */
             "360472\t364011\t490273\tWhat causes stool color to change?\tWhat can cause "
             "stool to come out as little balls?\t0",
             QQP_HEADER);
    petl_dataset *ds = load_str("qqp", "train.tsv", buf, NULL, 0);
    CHECK(petl_dataset_count(ds) == 3 && petl_dataset_skipped(ds) == 2);
    CHECK(text_is(ex(ds, 1)->text_b, "How do you control your horniness?"));
    CHECK(ex(ds, 1)->label == 1 && ex(ds, 2)->line == 6 && ex(ds, 2)->label == 0);
    petl_dataset_free(ds);

    /* Only malformed rows: an error, not an empty dataset. */
    snprintf(buf, sizeof buf, "%s1\t2\t3\n", QQP_HEADER);
    expect_fail("qqp", buf, strlen(buf), PETL_ERR_FORMAT, "1 skipped as malformed");
    /* Other tasks never skip. */
    EXPECT_FAIL("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tonly a\n",
                PETL_ERR_FORMAT, "bad.tsv:2: expected at least 5 tab-separated columns, found 4");
}

static void test_mnli(void) {
    const char *train =
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
        "0\t31193\t31193n\tgovernment\t( ( Conceptually cream ) skimming )\t( ( Product and "
        "geography ) ( are ( what ( make ( cream ( skimming work ) ) ) ) ) )\t(ROOT (S (NP (JJ "
        "Conceptually) (NN cream)) (VP (VBZ skimming))))\t(ROOT (S (NP (NN Product)) (VP (VBP "
        "are))))\tConceptually cream skimming has two basic dimensions - product and geography."
        "\tProduct and geography are what make cream skimming work. \tneutral\tneutral\n"
        "1\t101457\t101457e\ttelephone\t( you know )\t( You ( lose ( the things ) ) )\t(ROOT "
        "(S))\t(ROOT (S))\tyou know during the season and i guess at at your level uh you lose "
        "them\tYou lose the things to the following level if the people recall.\tentailment\t"
        "entailment\n"
        "2\t134793\t134793c\tfiction\t( a )\t( b )\t(ROOT)\t(ROOT)\tOne of our number will carry "
        "out your instructions minutely.\tA member of my team will execute your orders with "
        "immense precision.\tcontradiction\tcontradiction\n";
    petl_dataset *ds = load_str("mnli", "train.tsv", train, NULL, 0);
    CHECK(petl_dataset_count(ds) == 3 && petl_dataset_num_labels(ds) == 3);
    CHECK(ex(ds, 0)->label == 2 && ex(ds, 1)->label == 1 && ex(ds, 2)->label == 0);
    CHECK(text_is(ex(ds, 1)->text_b,
                  "You lose the things to the following level if the people recall."));
    CHECK(text_is(ex(ds, 0)->text_b, "Product and geography are what make cream skimming work. "));
    petl_dataset_free(ds);

    const char *dev =
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4"
        "\tlabel5\tgold_label\n"
        "0\t63735\t63735n\tslate\t( a )\t( b )\t(ROOT)\t(ROOT)\tThe new rights are nice enough"
        "\tEveryone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\t"
        "neutral\tneutral\n"
        "1\t91383\t91383c\tslate\t( a )\t( b )\t(ROOT)\t(ROOT)\tThis site includes a list of "
        "all award winners.\tThe Government Executive articles housed on the website are not "
        "able to be searched .\tcontradiction\tcontradiction\tcontradiction\tcontradiction\t"
        "contradiction\tcontradiction\n";
    ds = load_str("mnli", "dev_matched.tsv", dev, NULL, 0);
    CHECK(petl_dataset_count(ds) == 2 && ex(ds, 0)->label == 2 && ex(ds, 1)->label == 0);
    CHECK(text_is(ex(ds, 0)->text_a, "The new rights are nice enough"));
    petl_dataset_free(ds);

    EXPECT_FAIL("mnli",
                "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\t"
                "label1\tgold_label\n"
                "0\t1\t1n\tslate\ta\tb\tc\td\tA man.\tA person.\t-\t-\n",
                PETL_ERR_FORMAT, "bad.tsv:2: unknown label '-'");
}

static void test_qnli_wnli(void) {
    petl_dataset *ds = load_str(
        "qnli", "dev.tsv",
        "index\tquestion\tsentence\tlabel\n"
        "0\tWhat came into force after the new constitution was herald?\tAs of that day, the "
        "new constitution heralding the Second Republic came into force.\tentailment\n"
        "1\tWhat is the first major city in the stream of the Rhine?\tThe most important "
        "tributaries in this area are the Ill below of Strasbourg.\tnot_entailment\n",
        NULL, 0);
    CHECK(petl_dataset_count(ds) == 2 && ex(ds, 0)->label == 0 && ex(ds, 1)->label == 1);
    CHECK(text_is(ex(ds, 1)->text_a, "What is the first major city in the stream of the Rhine?"));
    petl_dataset_free(ds);

    ds = load_str("wnli", "train.tsv",
                  "index\tsentence1\tsentence2\tlabel\n"
                  "0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole."
                  "\tThe carrot had a hole.\t1\n"
                  "1\tJohn couldn't see the stage with Billy in front of him because he is so "
                  "short.\tJohn is so short.\t1\n"
                  "2\tThe police arrested all of the gang members.\tThe police were trying to "
                  "stop the gang.\t0\n",
                  NULL, 0);
    CHECK(petl_dataset_count(ds) == 3 && ex(ds, 2)->label == 0 && ex(ds, 2)->line == 4);
    CHECK(text_is(ex(ds, 0)->text_b, "The carrot had a hole."));
    petl_dataset_free(ds);
}

/* ----------------------------------------------------------------- file-level rules */

static void test_file_rules(void) {
    /* BOM + header; CRLF; no final newline; literal quotes in TSV. */
    petl_dataset *ds = load_str("sst2", "a.tsv",
                                "\xEF\xBB\xBFsentence\tlabel\r\n\"quoted\" text \t1\r\n"
                                "it 's \"fine\"\t0\r\n\r\nlast one\t1",
                                NULL, 0);
    CHECK(petl_dataset_count(ds) == 3);
    CHECK(text_is(ex(ds, 0)->text_a, "\"quoted\" text ") && ex(ds, 0)->label == 1);
    CHECK(text_is(ex(ds, 1)->text_a, "it 's \"fine\"") && ex(ds, 1)->len_a == 12);
    CHECK(text_is(ex(ds, 2)->text_a, "last one") && ex(ds, 2)->line == 5);
    petl_dataset_free(ds);

    /* BOM on a headerless file does not end up in the first text. */
    ds = load_str("cola", "b.tsv", "\xEF\xBB\xBFgj04\t1\t\tThe sailors rode.\nx\t0\t*\tBad.\n",
                  NULL, 0);
    CHECK(text_is(ex(ds, 0)->text_a, "The sailors rode.") && ex(ds, 1)->label == 0);
    CHECK(ex(ds, 0)->line == 1 && ex(ds, 1)->line == 2);
    petl_dataset_free(ds);

    /* UTF-8 text is kept byte for byte. */
    ds = load_str("sst2", "c.tsv",
                  "sentence\tlabel\nna\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80\t1\n", NULL, 0);
    CHECK(text_is(ex(ds, 0)->text_a, "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80"));
    petl_dataset_free(ds);

    /* In-memory parse of a buffer that is not NUL-terminated. */
    char mem[] = {'s', '\t', 'l', '\n', 'h', 'i', '\t', '1', 'X'};
    petl_task t = task("tsv:text=0,label=1,header"); /* "s\tl" is not SST-2's header */
    petl_error err;
    CHECK_OK(petl_dataset_parse(&t, mem, sizeof mem - 1, "mem", NULL, 0, &ds, &err), &err);
    CHECK(petl_dataset_count(ds) == 1 && text_is(ex(ds, 0)->text_a, "hi"));
    petl_dataset_free(ds);
    petl_dataset_free(NULL);
}

static void test_bad_input(void) {
    EXPECT_FAIL("sst2", "sentence\tlabel\ngood\t1\nno label here\n", PETL_ERR_FORMAT,
                "bad.tsv:3: expected at least 2 tab-separated columns, found 1");
    EXPECT_FAIL("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", PETL_ERR_FORMAT,
                "bad.tsv:2: unknown label 'maybe' (the labels are 'entailment', "
                "'not_entailment')");
    EXPECT_FAIL("sst2", "sentence\tlabel\ngood\t1 \n", PETL_ERR_FORMAT,
                "bad.tsv:2: unknown label '1 '");
    const char *stsb_head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
                            "sentence1\tsentence2\tscore\n";
    const char *bad_scores[] = {"abc", "", "nan", "inf", "1.5x", " 2", "1e999"};
    for (size_t i = 0; i < sizeof bad_scores / sizeof bad_scores[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "%s0\tg\tf\t2012\t0001\tnone\tnone\tA.\tB.\t1.0\n"
                 "1\tg\tf\t2012\t0002\tnone\tnone\tC.\tD.\t%s\n",
                 stsb_head, bad_scores[i]);
        expect_fail("stsb", buf, strlen(buf), PETL_ERR_FORMAT, "bad.tsv:3: regression target");
    }
    EXPECT_FAIL("sst2", "", PETL_ERR_FORMAT, "bad.tsv: empty file");
    EXPECT_FAIL("sst2", "\xEF\xBB\xBF", PETL_ERR_FORMAT, "bad.tsv: empty file");
    EXPECT_FAIL("cola", "\n\r\n\n", PETL_ERR_FORMAT, "bad.tsv: empty file");
    EXPECT_FAIL("sst2", "sentence\tlabel\n", PETL_ERR_FORMAT, "bad.tsv: no examples");
    EXPECT_FAIL("sst2", "sentence\tlabel\nok\t1\nbad \xFF byte\t1\n", PETL_ERR_UTF8,
                "bad.tsv:3:5: invalid UTF-8 (byte 0xff)");
    EXPECT_FAIL("sst2", "sentence\tlabel\n\xC0\xAF\t1\n", PETL_ERR_UTF8, "bad.tsv:2:1:");
    EXPECT_FAIL("sst2", "sentence\tlabel\n\xED\xA0\x80\t1\n", PETL_ERR_UTF8, "bad.tsv:2:1:");
    EXPECT_FAIL("sst2", "sentence\tlabel\nx\t1\nend \xE2\x82", PETL_ERR_UTF8, "bad.tsv:3:5:");
    EXPECT_FAIL("sst2", "sentence\tlabel\nnul \0 byte\t1\n", PETL_ERR_FORMAT,
                "bad.tsv:2:5: NUL byte");

    petl_task t = task("sst2");
    petl_dataset *ds = (petl_dataset *)1;
    petl_error err;
    CHECK(petl_dataset_load(&t, "/nonexistent/x.tsv", NULL, 0, &ds, &err) == PETL_ERR_IO);
    CHECK(ds == NULL && strstr(err.msg, "/nonexistent/x.tsv") != NULL);
    CHECK(petl_dataset_load(NULL, "x", NULL, 0, &ds, &err) == PETL_ERR_ARG);
    petl_task broken = t;
    broken.col_a = PETL_COL_NONE;
    CHECK(petl_dataset_parse(&broken, "a\t1\n", 4, "m", NULL, 0, &ds, &err) == PETL_ERR_ARG);
}

/* Another task's file is refused by its header, not read from the wrong columns (issue 16,
 * item 9): SST-2 reading CoLA's headerless rows took the source id for the sentence. */
static void test_wrong_task_files(void) {
    EXPECT_FAIL("sst2",
                "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
                "gj04\t1\t\tThe weights made the rope stretch over the pulley.\n",
                PETL_ERR_FORMAT,
                "bad.tsv:1: not SST-2 data: SST-2 files start with a header row that has "
                "'sentence' in column 1; this one has 'gj04' there");
    EXPECT_FAIL("rte", "sentence\tlabel\ngood\t1\n", PETL_ERR_FORMAT,
                "bad.tsv:1: not RTE data: RTE files start with a header row that has 'sentence1' "
                "in column 2; this one has 'label' there");
    EXPECT_FAIL("stsb", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
                PETL_ERR_FORMAT, "has 'sentence1' in column 8; this one has no such column");
    EXPECT_FAIL("qnli", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
                PETL_ERR_FORMAT, "bad.tsv:1: not QNLI data");
    EXPECT_FAIL("mrpc", "index\tsentence1\tsentence2\tlabel\t-\n0\ta\tb\t1\t-\n", PETL_ERR_FORMAT,
                "has 'Quality' in column 1; this one has 'index'");
    EXPECT_FAIL("wnli", "index\tsentence1\tsentence2\tgold_label\n0\ta\tb\t1\n", PETL_ERR_FORMAT,
                "has 'label' in the last column; this one has 'gold_label'");
    /* the real headers pass (a BOM before MRPC's, as in the official file) */
    petl_dataset *ds = load_str("mrpc", "a.tsv",
                                "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                "1\t1\t2\tA.\tB.\n",
                                NULL, 0);
    CHECK(petl_dataset_count(ds) == 1 && petl_dataset_columns(ds) == 5);
    petl_dataset_free(ds);

    /* The width petl_adapter_info.data_columns records: every row's, else 0. */
    ds = load_str("tsv:text=0,label=1", "g.tsv", "a\t1\tx\nb\t0\ty\n", NULL, 0);
    CHECK(petl_dataset_columns(ds) == 3);
    petl_dataset_free(ds);
    ds = load_str("tsv:text=0,label=1,header", "g.tsv", "t\tl\na\t1\tx\nb\t0\n", NULL, 0);
    CHECK(petl_dataset_columns(ds) == 0);
    petl_dataset_free(ds);
    ds = load_str("jsonl:text=t,label=l", "g.jsonl", "{\"t\": \"a\", \"l\": 1}\n", NULL, 0);
    CHECK(petl_dataset_columns(ds) == 0);
    petl_dataset_free(ds);
}

/* ------------------------------------------------------------------ generic formats */

static void test_generic_tsv(void) {
    /* Discovered labels are sorted; indices follow the sorted order. */
    petl_dataset *ds = load_str("tsv:text=1,label=0", "g.tsv",
                                "pos\tgreat\nneg\tawful\nneutral\tfine\npos\tsuperb\n", NULL, 0);
    const char *const *l = petl_dataset_labels(ds);
    CHECK(petl_dataset_num_labels(ds) == 3 && strcmp(l[0], "neg") == 0);
    CHECK(strcmp(l[1], "neutral") == 0 && strcmp(l[2], "pos") == 0);
    CHECK(ex(ds, 0)->label == 2 && ex(ds, 1)->label == 0 && ex(ds, 2)->label == 1);
    CHECK(ex(ds, 3)->label == 2 && ex(ds, 0)->text_b == NULL);

    /* Dev against the train set's labels: a new label is an error naming file and line. */
    petl_task t = task("tsv:text=1,label=0");
    petl_dataset *dev;
    petl_error err;
    const char *bad = "neg\tmeh\nmixed\thm\n", *good = "pos\tok\nneg\tmeh\n";
    const char *path = write_file("dev.tsv", bad, strlen(bad));
    CHECK(petl_dataset_load(&t, path, l, 3, &dev, &err) == PETL_ERR_FORMAT);
    CHECKF(strstr(err.msg, "dev.tsv:2: unknown label 'mixed'") != NULL, "%s", err.msg);
    path = write_file("dev.tsv", good, strlen(good));
    CHECK_OK(petl_dataset_load(&t, path, l, 3, &dev, &err), &err);
    CHECK(ex(dev, 0)->label == 2 && ex(dev, 1)->label == 0 && petl_dataset_num_labels(dev) == 3);
    petl_dataset_free(dev);
    petl_dataset_free(ds);

    /* Integer labels sort numerically. */
    ds = load_str("tsv:text=0,label=1", "n.tsv", "a\t10\nb\t2\nc\t-1\nd\t1\n", NULL, 0);
    l = petl_dataset_labels(ds);
    CHECK(strcmp(l[0], "-1") == 0 && strcmp(l[1], "1") == 0 && strcmp(l[2], "2") == 0);
    CHECK(strcmp(l[3], "10") == 0 && ex(ds, 0)->label == 3);
    petl_dataset_free(ds);

    /* Columns by header name, text pair, regression. */
    ds = load_str("tsv:text=s1,text_b=s2,label=score,header,regression", "r.tsv",
                  "id\ts2\tscore\ts1\n7\tB one\t2.5\tA one\n8\tB two\t-1e-3\tA two\n", NULL, 0);
    CHECK(petl_dataset_count(ds) == 2 && text_is(ex(ds, 0)->text_a, "A one"));
    CHECK(text_is(ex(ds, 0)->text_b, "B one") && ex(ds, 0)->target == 2.5);
    CHECK(ex(ds, 1)->target == -1e-3 && ex(ds, 1)->label == -1);
    petl_dataset_free(ds);

    EXPECT_FAIL("tsv:text=sentence,label=lbl,header", "sentence\tlabel\nx\t1\n", PETL_ERR_FORMAT,
                "bad.tsv:1: the header has no column 'lbl'");

    /* Too many distinct labels means the wrong column. */
    size_t cap = (PETL_DATA_MAX_LABELS + 2) * 16, k = 0;
    char *big = malloc(cap);
    CHECK(big != NULL);
    for (int i = 0; i <= PETL_DATA_MAX_LABELS; i++)
        k += (size_t)snprintf(big + k, cap - k, "text\tL%d\n", i);
    expect_fail("tsv:text=0,label=1", big, k, PETL_ERR_FORMAT, "more than 1024 distinct labels");
    free(big);
}

static void test_generic_csv(void) {
    const char *csv = "id,review,stars\r\n"
                      "1,\"Great, really great\",5\r\n"
                      "2,\"He said \"\"no\"\"\nand left\",1\r\n"
                      "3,plain text with a \" inside,3\r\n"
                      "\r\n"
                      "4,\"\",5\r\n"
                      "5,last,\"1\"";
    petl_dataset *ds = load_str("csv:text=review,label=stars,header", "c.csv", csv, NULL, 0);
    CHECK(petl_dataset_count(ds) == 5);
    CHECK(text_is(ex(ds, 0)->text_a, "Great, really great") && ex(ds, 0)->line == 2);
    CHECK(text_is(ex(ds, 1)->text_a, "He said \"no\"\nand left") && ex(ds, 1)->line == 3);
    CHECK(ex(ds, 1)->len_a == strlen("He said \"no\"\nand left"));
    CHECK(text_is(ex(ds, 2)->text_a, "plain text with a \" inside") && ex(ds, 2)->line == 5);
    CHECK(text_is(ex(ds, 3)->text_a, "") && ex(ds, 3)->len_a == 0 && ex(ds, 3)->line == 7);
    CHECK(text_is(ex(ds, 4)->text_a, "last") && ex(ds, 4)->line == 8);
    const char *const *l = petl_dataset_labels(ds);
    CHECK(petl_dataset_num_labels(ds) == 3 && strcmp(l[ex(ds, 4)->label], "1") == 0);
    CHECK(strcmp(l[ex(ds, 0)->label], "5") == 0 && strcmp(l[ex(ds, 2)->label], "3") == 0);
    petl_dataset_free(ds);

    /* A quoted field that runs over the end of a line keeps CRLF inside it as written. */
    ds = load_str("csv:text=0,text_b=1,label=2", "d.csv", "\"a\r\nb\",\"c,d\",x\n", NULL, 0);
    CHECK(text_is(ex(ds, 0)->text_a, "a\r\nb") && text_is(ex(ds, 0)->text_b, "c,d"));
    petl_dataset_free(ds);

    EXPECT_FAIL("csv:text=0,label=1", "ok,1\n\"never closed,1\nmore,0\n", PETL_ERR_FORMAT,
                "bad.tsv:2: quoted field never closed");
    EXPECT_FAIL("csv:text=0,label=1", "ok,1\n\"a\"b,1\n", PETL_ERR_FORMAT,
                "bad.tsv:2: unexpected character 'b' after a closing quote");
    EXPECT_FAIL("csv:text=0,label=2", "a,b,c\n\"x\ny\",1\n", PETL_ERR_FORMAT,
                "bad.tsv:2: expected at least 3 comma-separated columns, found 2");
}

static void test_generic_jsonl(void) {
    const char *jl =
        "{\"premise\": \"A man \\\"sleeps\\\".\", \"hypothesis\": \"caf\\u00e9\", \"y\": 2}\n"
        "\n"
        "{\"premise\": \"b\", \"hypothesis\": \"c\", \"y\": 0, \"extra\": [1, 2]}\r\n"
        "  \n"
        "{\"y\": 10, \"hypothesis\": \"e\", \"premise\": \"d\"}";
    petl_dataset *ds =
        load_str("jsonl:text=premise,text_b=hypothesis,label=y", "j.jsonl", jl, NULL, 0);
    CHECK(petl_dataset_count(ds) == 3 && petl_dataset_num_labels(ds) == 3);
    CHECK(text_is(ex(ds, 0)->text_a, "A man \"sleeps\".") &&
          text_is(ex(ds, 0)->text_b, "caf\xC3\xA9"));
    CHECK(ex(ds, 0)->line == 1 && ex(ds, 1)->line == 3 && ex(ds, 2)->line == 5);
    CHECK(ex(ds, 0)->label == 1 && ex(ds, 1)->label == 0 && ex(ds, 2)->label == 2);
    petl_dataset_free(ds);

    ds = load_str(
        "jsonl:text=t,label=v,regression", "r.jsonl",
        "{\"t\": \"a\", \"v\": 1.25}\n{\"t\": \"b\", \"v\": 3}\n{\"t\": \"c\", \"v\": \"-0.5\"}\n",
        NULL, 0);
    CHECK(ex(ds, 0)->target == 1.25 && ex(ds, 1)->target == 3 && ex(ds, 2)->target == -0.5);
    petl_dataset_free(ds);

    ds = load_str("jsonl:text=t,label=l", "s.jsonl",
                  "{\"t\": \"a\", \"l\": \"pos\"}\n{\"t\": \"b\", \"l\": \"neg\"}\n", NULL, 0);
    CHECK(ex(ds, 0)->label == 1 && strcmp(petl_dataset_labels(ds)[0], "neg") == 0);
    petl_dataset_free(ds);

    const char *spec = "jsonl:text=t,label=l";
    EXPECT_FAIL(spec, "{\"t\": \"a\", \"l\": 1}\n{\"l\": 1}\n", PETL_ERR_FORMAT,
                "bad.tsv:2: missing key \"t\"");
    EXPECT_FAIL(spec, "{\"t\": \"a\", \"l\": 1}\n{\"t\": \"a\", \"l\": 1\n", PETL_ERR_FORMAT,
                "bad.tsv:2:");
    EXPECT_FAIL(spec, "[1, 2]\n", PETL_ERR_FORMAT, "bad.tsv:1: expected a JSON object");
    EXPECT_FAIL(spec, "{\"t\": 5, \"l\": 1}\n", PETL_ERR_FORMAT,
                "bad.tsv:1: \"t\" is not a string");
    EXPECT_FAIL(spec, "{\"t\": \"a\", \"l\": 0.5}\n", PETL_ERR_FORMAT,
                "bad.tsv:1: label \"l\" must be a string or an integer");
    EXPECT_FAIL(spec, "{\"t\": \"a\", \"l\": 1, \"l\": 2}\n", PETL_ERR_FORMAT, "bad.tsv:1:");
    EXPECT_FAIL("jsonl:text=t,label=v,regression", "{\"t\": \"a\", \"v\": \"x\"}\n",
                PETL_ERR_FORMAT, "bad.tsv:1: regression target 'x'");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/petl_test_data_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_lookup();
    test_real_glue();
    test_qqp();
    test_mnli();
    test_qnli_wnli();
    test_file_rules();
    test_bad_input();
    test_wrong_task_files();
    test_generic_tsv();
    test_generic_csv();
    test_generic_jsonl();
    const char *names[] = {"bad.tsv", "train.tsv", "dev.tsv", "dev_matched.tsv", "a.tsv",
                           "b.tsv",   "c.tsv",     "g.tsv",   "n.tsv",           "r.tsv",
                           "c.csv",   "d.csv",     "j.jsonl", "r.jsonl",         "s.jsonl"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    CHECK_DONE("test_data");
}
