/* petl import: an AdapterHub (`adapters` library) bottleneck adapter as a petl adapter folder,
 * for petl predict / eval / serve. See src/adapterhub.c for what maps and what is refused. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: petl import --from ADAPTERHUB_DIR --model DIR --out ADAPTER_DIR [OPTIONS]\n\n"
            "Reads an adapter saved by the adapters library (adapter_config.json with\n"
            "adapter.safetensors or pytorch_adapter.bin; head_config.json with\n"
            "model_head.safetensors or pytorch_model_head.bin) and writes a petl adapter\n"
            "folder. petl computes the paper's adapter (adapters' double_seq_bn / houlsby, or\n"
            "its output adapter alone) with classification heads of 1 or 2 layers (regression:\n"
            "1 label) and question_answering heads (--task squad); anything else is refused,\n"
            "naming the field. AdapterHub records no hash of the base model: --model must be\n"
            "the one the adapter was trained on (its model_type, hidden size and every tensor\n"
            "shape are checked).\n\n"
            "  --from DIR        the AdapterHub folder\n"
            "  --model DIR       base model folder (required)\n"
            "  --out DIR         the petl adapter folder to write\n"
            "  --task TASK       the task it does, as petl train takes it (sst2, mrpc, ... or a\n"
            "                    generic spec): label names and the input shape (single text\n"
            "                    or pair); default \"tsv:text=0,label=1\" (single texts);\n"
            "                    squad for a question_answering head\n"
            "  --max-len N       the truncation eval / predict use by default (128; squad:\n"
            "                    the window length, 384, with petl's other SQuAD defaults)\n"
            "  --force           replace an existing petl adapter folder at --out\n"
            "  -h, --help        this help\n");
}

int cmd_import(int argc, char **argv) {
    const char *from = NULL, *model = NULL, *out = NULL, *task_spec = "tsv:text=0,label=1";
    long max_len = 0; /* 0: 128, or SQuAD's 384 */
    bool force = false;
    const cli_opt opts[] = {
        CLI_OPT_STR("--from", &from),
        CLI_OPT_STR("--model", &model),
        CLI_OPT_STR("--out", &out),
        CLI_OPT_STR("--task", &task_spec),
        CLI_OPT_LONG("--max-len", &max_len, 3, 1 << 20),
        CLI_OPT_FLAG("--force", &force),
    };
    int rc = cli_parse_options("import", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!from || !model || !out) {
        fprintf(stderr,
                "petl import: --from, --model and --out are required (petl import --help)\n");
        return 2;
    }
    petl_error err = {0};
    petl_task task;
    const bool squad = !strcmp(task_spec, "squad");
    if (!max_len) max_len = squad ? 384 : 128;
    if (!squad && petl_task_lookup(task_spec, &task, &err) != PETL_OK) {
        fprintf(stderr, "petl import: --task: %s\n", err.msg);
        return 2;
    }
    petl_tokenizer *tok = NULL;
    petl_model *base = NULL;
    petl_task_model *tm = NULL;
    petl_adapterhub_imported im = {0};
    petl_adapter_info info = {0};
    rc = 1;
    if (petl_tokenizer_load(model, &tok, &err) != PETL_OK ||
        petl_model_load(model, &base, &err) != PETL_OK ||
        cli_check_max_len("import", model, base, max_len) ||
        petl_adapterhub_import(from, base, &tm, &im, &err) != PETL_OK) {
        if (err.msg[0]) fprintf(stderr, "petl import: %s\n", err.msg);
        goto done;
    }
    const petl_tune_config *tc = petl_task_model_tune_config(tm);
    if (squad != (tc->head == PETL_HEAD_SPAN)) {
        fprintf(stderr, "petl import: %s holds a %s head: %s\n", from,
                squad ? "classification" : "question_answering",
                squad ? "--task squad takes question_answering heads" : "give --task squad");
        goto done;
    }
    info.max_len = (int)max_len;
    info.tune = *tc;
    if (squad) { /* a span head: question + context windows, petl's SQuAD defaults */
        snprintf(info.task_name, sizeof info.task_name, "squad");
        snprintf(info.task_spec, sizeof info.task_spec, "squad");
        info.pair_input = true;
        petl_squad_params_default(&info.squad);
        info.squad.max_seq_len = (int)max_len;
        snprintf(info.squad_eval_articles, sizeof info.squad_eval_articles, "all");
        goto save;
    }
    if (task.regression != (tc->num_labels == 1)) {
        fprintf(stderr, "petl import: --task %s is %s, the head has %d labels\n", task_spec,
                task.regression ? "a regression" : "a classification", tc->num_labels);
        goto done;
    }
    snprintf(info.task_name, sizeof info.task_name, "%s", task.name);
    snprintf(info.task_spec, sizeof info.task_spec, "%s", task_spec);
    info.regression = task.regression;
    info.pair_input = task.col_b != PETL_COL_NONE;
    if (!task.regression) {
        char num[16][12];
        const char *names[16];
        const char *const *labels = task.n_labels ? task.labels : (const char *const *)im.labels;
        if (task.n_labels && task.n_labels != (size_t)tc->num_labels) {
            fprintf(stderr, "petl import: --task %s has %zu labels, the head %d\n", task_spec,
                    task.n_labels, tc->num_labels);
            goto done;
        }
        if (!task.n_labels && !im.labels) { /* no names anywhere: 0, 1, ... */
            if (tc->num_labels > 16) {
                fprintf(stderr, "petl import: the head has %d labels and no names\n",
                        tc->num_labels);
                goto done;
            }
            for (int k = 0; k < tc->num_labels; k++)
                snprintf(num[k], sizeof num[k], "%d", k), names[k] = num[k];
            labels = names;
        }
        if (petl_adapter_info_set_labels(&info, labels, (size_t)tc->num_labels, &err) != PETL_OK) {
            fprintf(stderr, "petl import: %s\n", err.msg);
            goto done;
        }
    }
save:
    petl_base_identity_of(base, &info.base);
    petl_base_identity_set_tokenizer(&info.base, tok);
    if (petl_adapter_save(out, tm, &info, force, &err) != PETL_OK) {
        fprintf(stderr, "petl import: %s\n", err.msg);
        goto done;
    }
    printf("{\"from\": ");
    cli_json_string(stdout, from);
    printf(", \"out\": ");
    cli_json_string(stdout, out);
    printf(", \"name\": ");
    cli_json_string(stdout, im.name);
    printf(", \"adapter_size\": %d, \"placement\": \"%s\", \"adapter_act\": \"%s\", "
           "\"num_labels\": %d, \"head_dense\": %s}\n",
           tc->adapter_size, petl_placement_name(tc->placement),
           petl_adapter_act_name(tc->adapter_act), tc->num_labels,
           tc->head_dense ? "true" : "false");
    rc = 0;
done:
    petl_adapter_info_free(&info);
    petl_adapterhub_imported_free(&im);
    petl_task_model_free(tm);
    petl_model_free(base);
    petl_tokenizer_free(tok);
    return rc;
}
