/* petl export: a trained adapter in another library's format. Today AdapterHub's (the
 * `adapters` library): see src/adapterhub.c for what maps and what is refused. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: petl export --adapter ADAPTER_DIR --out DIR [OPTIONS]\n\n"
               "Writes the adapter as an AdapterHub (`adapters` library) bottleneck adapter:\n"
               "OUT/adapter_config.json + adapter.safetensors (adapters' double_seq_bn, the\n"
               "paper's placement) and OUT/head_config.json + model_head.safetensors. Load it in\n"
               "Python with model.load_adapter(OUT, use_safetensors=True). LayerNorms the adapter\n"
               "trained (the default --tune adapter trains them) have no place in AdapterHub's\n"
               "format: they go to OUT/" PETL_ADAPTERHUB_LAYERNORMS " under the model's own\n"
               "tensor names (model.load_state_dict(load_file(...), strict=False) puts them in\n"
               "place). OUT must not exist or be empty.\n\n"
               "  --adapter DIR     adapter folder written by petl train\n"
               "  --out DIR         the export folder\n"
               "  --format NAME     adapterhub (the only one, default)\n"
               "  --name NAME       the adapter's name in adapters (default: the task's name)\n"
               "  --model DIR       base model folder (default: $PETL_MODEL or\n"
               "                    models/all-MiniLM-L6-v2)\n"
               "  --model-name ID   what adapter_config.json records as model_name (default:\n"
               "                    the --model path)\n"
               "  -h, --help        this help\n\n"
               "Prints one JSON object: the files written and their tensor counts.\n");
}

int cmd_export(int argc, char **argv) {
    const char *model = cli_default_model(), *adapter = NULL, *out = NULL, *format = "adapterhub",
               *name = NULL, *model_name = NULL;
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &model), CLI_OPT_STR("--adapter", &adapter),
        CLI_OPT_STR("--out", &out),     CLI_OPT_STR("--format", &format),
        CLI_OPT_STR("--name", &name),   CLI_OPT_STR("--model-name", &model_name),
    };
    int rc = cli_parse_options("export", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!adapter || !out) {
        fprintf(stderr, "petl export: --adapter and --out are required (petl export --help)\n");
        return 2;
    }
    if (strcmp(format, "adapterhub") != 0) {
        fprintf(stderr, "petl export: --format %s: the only format is adapterhub\n", format);
        return 2;
    }
    if (cli_check_stdout("export")) return 1;
    cli_adapter ad;
    if (cli_load_adapter("export", model, adapter, NULL, &ad)) return 1;
    petl_adapterhub_report rep;
    petl_error err;
    petl_status s = petl_adapterhub_export(ad.tm, &ad.info, out, name ? name : ad.info.task_name,
                                           model_name ? model_name : model, &rep, &err);
    if (s != PETL_OK) {
        fprintf(stderr, "petl export: %s\n", err.msg);
        cli_adapter_free(&ad);
        return 1;
    }
    printf("{\"format\": \"adapterhub\", \"out\": ");
    cli_json_string(stdout, out);
    printf(", \"name\": ");
    cli_json_string(stdout, name ? name : ad.info.task_name);
    printf(", \"adapter_tensors\": %zu, \"head_tensors\": %zu, \"layernorm_tensors\": %zu}\n",
           rep.adapter_tensors, rep.head_tensors, rep.layernorm_tensors);
    if (rep.layernorm_tensors)
        fprintf(stderr,
                "petl export: the adapter trained %zu LayerNorm tensors: they are in "
                "%s/" PETL_ADAPTERHUB_LAYERNORMS ", which adapters does not read by itself "
                "(load it with load_state_dict(..., strict=False) for the same outputs)\n",
                rep.layernorm_tensors, out);
    cli_adapter_free(&ad);
    return 0;
}
