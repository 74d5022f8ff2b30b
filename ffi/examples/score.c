/*
 * score.c: the perplexity of a text in one evaluation, with every position's logits
 * (llmrt_eval_all + llmrt_get_logits_ith) -- what `llm-run perplexity --ctx N`
 * prints for a text of N tokens.
 *
 *   score MODEL FILE [THREADS]
 *
 * Build: cc -Wall -Wextra -Werror score.c -I../include -L../../target/release -lllmrt -lm
 */
#include "llmrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, llmrt_status st) {
    fprintf(stderr, "score: %s: %s: %s\n", what, llmrt_status_name(st), llmrt_last_error());
    return 1;
}

/* log p(token) under the softmax of logits[..n], in double. */
static double log_prob(const float *logits, size_t n, uint32_t token) {
    double max = logits[0], sum = 0;
    for (size_t i = 1; i < n; i++) max = logits[i] > max ? logits[i] : max;
    for (size_t i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    return (double)logits[token] - max - log(sum);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: score MODEL FILE [THREADS]\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        fprintf(stderr, "score: cannot open %s\n", argv[2]);
        return 1;
    }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);

    llmrt_model *model = NULL;
    llmrt_context *ctx = NULL;
    llmrt_status st = llmrt_model_load(argv[1], &model);
    if (st != LLMRT_OK) return fail(argv[1], st);
    size_t n = 0;
    llmrt_tokenize(model, text, len, 0, NULL, 0, &n); /* the count */
    uint32_t *ids = (uint32_t *)malloc((n + 1) * sizeof(uint32_t));
    float *row = NULL;
    llmrt_model_info info;
    llmrt_model_get_info(model, &info);
    int rc = 0;
    if (ids == NULL || (st = llmrt_tokenize(model, text, len, 0, ids, n, &n)) != LLMRT_OK) {
        rc = fail("tokenize", st);
        goto done;
    }
    if (n < 2) {
        fprintf(stderr, "score: the text needs 2 tokens at least\n");
        rc = 1;
        goto done;
    }
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_ctx = (uint32_t)n;
    cp.n_threads = argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0;
    if ((st = llmrt_context_new(model, &cp, &ctx)) != LLMRT_OK) {
        rc = fail("context", st);
        goto done;
    }
    /* One call evaluates the text and keeps the logits of every position. */
    if ((st = llmrt_eval_all(ctx, ids, n)) != LLMRT_OK) {
        rc = fail("eval", st);
        goto done;
    }
    row = (float *)malloc(info.vocab_size * sizeof(float));
    double nll = 0;
    for (size_t i = 0; row != NULL && i + 1 < n; i++) {
        size_t got = 0;
        if ((st = llmrt_get_logits_ith(ctx, (int64_t)i, row, info.vocab_size, &got)) != LLMRT_OK) {
            rc = fail("logits", st);
            goto done;
        }
        nll -= log_prob(row, got, ids[i + 1]);
    }
    printf("perplexity: %.4f\n", exp(nll / (double)(n - 1)));
done:
    free(row);
    free(ids);
    llmrt_context_free(ctx);
    llmrt_model_free(model);
    return rc;
}
