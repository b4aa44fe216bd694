/* Sweep grids (src/sweep.c): parsing, run order, ids, and the errors a typo must give before
 * any training starts. */
#include "check.h"
#include "sweep.h"

static petl_grid *parse_ok(const char *spec) {
    petl_error err = {0};
    petl_grid *g = NULL;
    CHECK_OK(petl_grid_parse(spec, &g, &err), &err);
    return g;
}

static void parse_bad(const char *spec, const char *want) {
    petl_error err = {0};
    petl_grid *g = NULL;
    petl_status st = petl_grid_parse(spec, &g, &err);
    CHECKF(st == PETL_ERR_ARG && !g, "'%s' should fail", spec);
    CHECKF(strstr(err.msg, want), "'%s': message '%s' lacks '%s'", spec, err.msg, want);
}

int main(void) {
    petl_grid *g = parse_ok("  lr=3e-5,3e-4 epochs=1,3\tsize=8,64 seed=1,2 ");
    CHECK(g->n_axes == 4 && g->n_runs == 16);
    CHECK(!strcmp(g->axes[2].name, "size") && !strcmp(g->axes[2].option, "--adapter-size"));
    char id[PETL_GRID_ID_MAX];
    CHECK(petl_grid_run_id(g, 0, id, sizeof id) < sizeof id);
    CHECKF(!strcmp(id, "lr3e-5_epochs1_size8_seed1"), "%s", id);
    /* The last axis varies fastest. */
    petl_grid_run_id(g, 1, id, sizeof id);
    CHECKF(!strcmp(id, "lr3e-5_epochs1_size8_seed2"), "%s", id);
    petl_grid_run_id(g, 15, id, sizeof id);
    CHECKF(!strcmp(id, "lr3e-4_epochs3_size64_seed2"), "%s", id);
    CHECK(petl_grid_value_index(g, 6, 0) == 0 && petl_grid_value_index(g, 6, 1) == 1 &&
          petl_grid_value_index(g, 6, 2) == 1 && petl_grid_value_index(g, 6, 3) == 0);
    /* Every id is distinct. */
    for (size_t i = 0; i < g->n_runs; i++)
        for (size_t j = i + 1; j < g->n_runs; j++) {
            char a[PETL_GRID_ID_MAX], b[PETL_GRID_ID_MAX];
            petl_grid_run_id(g, i, a, sizeof a);
            petl_grid_run_id(g, j, b, sizeof b);
            CHECK(strcmp(a, b) != 0);
        }
    /* Truncation reports the length needed and stays terminated. */
    char small[8];
    CHECK(petl_grid_run_id(g, 0, small, sizeof small) == strlen("lr3e-5_epochs1_size8_seed1"));
    CHECK(strlen(small) == 7);
    petl_grid_free(g);

    /* Aliases, words, and top:K as a train argument; odd characters in ids. */
    g = parse_ok("adapter-size=2 top=1,6 act=relu placement=ffn,both");
    CHECK(g->n_runs == 4 && !strcmp(g->axes[0].name, "size") && !strcmp(g->axes[2].name, "act"));
    CHECK(!strcmp(g->axes[1].option, "--tune") && !strcmp(g->axes[1].args[1], "top:6"));
    petl_grid_free(g);
    g = parse_ok("tune=adapter,top:3,layernorm init-sd=1e-7,1");
    CHECK(g->n_runs == 6 && !strcmp(g->axes[0].args[1], "top:3"));
    petl_grid_run_id(g, 2, id, sizeof id);
    CHECKF(!strcmp(id, "tunetop-3_init-sd1e-7"), "%s", id);
    petl_grid_free(g);

    parse_bad("", "no axes");
    parse_bad("lr", "NAME=V1");
    parse_bad("=1", "NAME=V1");
    parse_bad("foo=1", "unknown axis 'foo'");
    parse_bad("lr=1 lr=2", "twice");
    parse_bad("size=8 adapter-size=4", "twice");
    parse_bad("tune=adapter top=2", "both set --tune");
    parse_bad("lr=", "empty value");
    parse_bad("lr=1,,2", "empty value");
    parse_bad("lr=abc", "bad value 'abc'");
    parse_bad("lr=nan", "bad value");
    parse_bad("epochs=0", "bad value '0'");
    parse_bad("size=8.5", "bad value");
    parse_bad("tune=top:0", "bad value");
    parse_bad("tune=fancy", "bad value");
    parse_bad("act=tanh", "bad value");
    /* Words are checked by the library's parsers, as `petl train` checks them. */
    parse_bad("act=relu,tanh", "unknown adapter activation 'tanh' (gelu, relu or swish)");
    parse_bad("placement=attn", "'attn' (both or ffn)");
    parse_bad("tune=adapter,fancy", "(adapter, full, top:K, layernorm or head)");
    parse_bad("top=65", "bad value '65' for axis 'top': tune mode 'top:65'");
    parse_bad("tune=top", "top:K needs");
    parse_bad("tune=top:1 seed=1,1", "same run");
    parse_bad("seed=1,2,3,4,5,6,7,8,9,10 lr=1,2,3,4,5,6,7,8,9,10 size=1,2,3,4,5,6,7,8,9,10 "
              "batch=1,2,3,4,5,6,7,8,9,10 epochs=1,2,3,4,5,6,7,8,9,10,11",
              "more than");
    CHECK_DONE("test_sweep");
}
