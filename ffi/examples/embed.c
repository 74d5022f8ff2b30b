/*
 * embed.c: sentence embeddings over libllmrt. Prints one vector per non-blank line
 * of FILE, values separated by tabs -- what `llm-run embed --format tsv` prints
 * (the same numbers; `%.9g` round-trips a float).
 *
 *   embed MODEL FILE [mean|last|first] [--normalize] [THREADS]
 *
 * Build: cc -Wall -Wextra -Werror embed.c -I../include -L../../target/release -lllmrt
 */
#include "llmrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, llmrt_status st) {
    fprintf(stderr, "embed: %s: %s: %s\n", what, llmrt_status_name(st), llmrt_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: embed MODEL FILE [mean|last|first] [--normalize] [THREADS]\n");
        return 2;
    }
    int32_t pooling = LLMRT_POOLING_MEAN, normalize = 0;
    uint32_t threads = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "mean") == 0) pooling = LLMRT_POOLING_MEAN;
        else if (strcmp(argv[i], "last") == 0) pooling = LLMRT_POOLING_LAST;
        else if (strcmp(argv[i], "first") == 0) pooling = LLMRT_POOLING_FIRST;
        else if (strcmp(argv[i], "--normalize") == 0) normalize = 1;
        else threads = (uint32_t)strtoul(argv[i], NULL, 10);
    }
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        fprintf(stderr, "embed: cannot open %s\n", argv[2]);
        return 1;
    }
    llmrt_model *model = NULL;
    llmrt_context *ctx = NULL;
    llmrt_status st = llmrt_model_load(argv[1], &model);
    if (st != LLMRT_OK) return fail(argv[1], st);
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = threads;
    st = llmrt_context_new(model, &cp, &ctx);
    if (st != LLMRT_OK) return fail("context", st);

    /* Ask for the size, then embed each line. */
    size_t d = 0;
    llmrt_embed(ctx, "", 0, pooling, normalize, NULL, 0, &d);
    float *vec = (float *)malloc(d * sizeof(float));
    char line[65536];
    int rc = 0;
    while (vec != NULL && fgets(line, sizeof line, f) != NULL) {
        size_t len = strcspn(line, "\r\n");
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == len) continue; /* blank */
        st = llmrt_embed(ctx, line, len, pooling, normalize, vec, d, &d);
        if (st != LLMRT_OK) {
            rc = fail("embed", st);
            break;
        }
        for (size_t j = 0; j < d; j++) printf(j ? "\t%.9g" : "%.9g", (double)vec[j]);
        printf("\n");
    }
    if (vec == NULL) rc = fail("out of memory", LLMRT_ERR_NO_MEMORY);
    free(vec);
    fclose(f);
    llmrt_context_free(ctx);
    llmrt_model_free(model);
    return rc;
}
