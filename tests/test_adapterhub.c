/* AdapterHub's reduction_factor: adapters reads the bottleneck back as int(H // rf) with
 * Python's float floor division, so petl must write an rf that gives m back exactly.
 * tests/golden/adapterhub/reduction.tsv (scripts/reference/gen-adapterhub-golden.py, checked
 * there with Python's own //) holds, for H in 384, 768, 1024 and every m in 1..H, the rf petl
 * must write: petl's is the same double, and petl's emulation of // gives m from it. The naive
 * H / m fails for some pairs (768 / 13 among them), which the emulation must see too. The
 * export itself is proven against the adapters library in tests/cli_adapterhub.sh. */
#include "check.h"
#include "petl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/golden/adapterhub/reduction.tsv", TEST_SRC_DIR);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    int rows = 0, naive_wrong = 0;
    while (f && fgets(line, sizeof line, f)) {
        int h, m;
        char hex[64];
        CHECKF(sscanf(line, "%d\t%d\t%63s", &h, &m, hex) == 3, "bad line: %s", line);
        double want = strtod(hex, NULL), got = petl_adapterhub_reduction_factor(h, m);
        CHECKF(got == want, "H %d m %d: rf %a, Python's %a", h, m, got, want);
        CHECKF(petl_adapterhub_floordiv(h, got) == m, "H %d m %d: %d // %a != m", h, m, h, got);
        naive_wrong += petl_adapterhub_floordiv(h, (double)h / m) != m;
        rows++;
    }
    if (f) fclose(f);
    CHECKF(rows == 384 + 768 + 1024, "%d rows", rows);
    CHECK(petl_adapterhub_floordiv(768, 768.0 / 13) == 12); /* the naive rf is off by one */
    CHECKF(naive_wrong > 0, "H / m was right for every pair: the test cannot tell");
    printf("reduction_factor: %d (H, m) pairs exact; H / m alone would be wrong for %d\n", rows,
           naive_wrong);
    CHECK(isnan(petl_adapterhub_reduction_factor(384, 0)));
    CHECK(isnan(petl_adapterhub_reduction_factor(384, 385)));
    CHECK_DONE("test_adapterhub");
}
