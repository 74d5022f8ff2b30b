/*
 * parallel.c: four completions of one prompt, decoded together in one context.
 * The prompt is evaluated once, in sequence 0, and copied to sequences 1..3
 * (llmrt_seq_copy); each sequence then samples with its own seed
 * (llmrt_seq_set_sampler, llmrt_sample_seq), and every step evaluates the four new
 * tokens in one llmrt_batch, so each weight matrix is read once for all four.
 * Prints each completion on its own line, "[s] TEXT", in sequence order.
 *
 *   parallel MODEL PROMPT [N_PREDICT [SEED [THREADS]]]
 *
 * Build: cc -Wall -Wextra -Werror parallel.c -I../include -L../../target/release -lllmrt
 */
#include "llmrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SEQ 4

static int fail(const char *what, llmrt_status st) {
    fprintf(stderr, "parallel: %s: %s: %s\n", what, llmrt_status_name(st), llmrt_last_error());
    return 1;
}

/* A growing byte string: one sequence's text (pieces may split a UTF-8 character,
 * so they are joined before printing). */
typedef struct {
    char *data;
    size_t len, cap;
} text;

static int append(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *d = (char *)realloc(t->data, cap);
        if (d == NULL) return 0;
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: parallel MODEL PROMPT [N_PREDICT [SEED [THREADS]]]\n");
        return 2;
    }
    const char *prompt = argv[2];
    uint32_t n_predict = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 32;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    uint32_t threads = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 0;

    llmrt_model *model = NULL;
    llmrt_context *ctx = NULL;
    uint32_t *ids = NULL;
    text out[N_SEQ];
    memset(out, 0, sizeof out);
    int rc = 0;
    llmrt_status st = llmrt_model_load(argv[1], &model);
    if (st != LLMRT_OK) return fail(argv[1], st);
    llmrt_model_info info;
    llmrt_model_get_info(model, &info);

    size_t n = 0;
    llmrt_tokenize(model, prompt, strlen(prompt), LLMRT_BOS_DEFAULT, NULL, 0, &n); /* the count */
    ids = (uint32_t *)malloc((n + 1) * sizeof(uint32_t));
    if (ids == NULL ||
        (st = llmrt_tokenize(model, prompt, strlen(prompt), LLMRT_BOS_DEFAULT, ids, n, &n)) != LLMRT_OK) {
        rc = fail("tokenize", st);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "parallel: the prompt is empty\n");
        rc = 1;
        goto done;
    }

    /* One context, four sequences; each holds n_ctx / n_seq tokens. */
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_seq = N_SEQ;
    cp.n_ctx = N_SEQ * (uint32_t)(n + n_predict);
    cp.n_threads = threads;
    if ((st = llmrt_context_new(model, &cp, &ctx)) != LLMRT_OK) {
        rc = fail("context", st);
        goto done;
    }
    /* The prompt once, in sequence 0, then shared. */
    if ((st = llmrt_eval(ctx, ids, n)) != LLMRT_OK) {
        rc = fail("eval", st);
        goto done;
    }
    for (uint32_t s = 0; s < N_SEQ; s++) {
        llmrt_sampler_params sp = cp.sampler;
        sp.seed = seed + s;
        if ((s > 0 && (st = llmrt_seq_copy(ctx, 0, s)) != LLMRT_OK) ||
            (st = llmrt_seq_set_sampler(ctx, s, &sp)) != LLMRT_OK) {
            rc = fail("sequence", st);
            goto done;
        }
    }

    /* Decode: sample each live sequence, then evaluate the new tokens in one batch. */
    int live[N_SEQ] = {1, 1, 1, 1};
    for (uint32_t step = 0; step < n_predict; step++) {
        uint32_t toks[N_SEQ], seqs[N_SEQ];
        size_t m = 0;
        for (uint32_t s = 0; s < N_SEQ; s++) {
            if (!live[s]) continue;
            uint32_t t = 0;
            if ((st = llmrt_sample_seq(ctx, s, &t)) != LLMRT_OK) {
                rc = fail("sample", st);
                goto done;
            }
            if (info.eos >= 0 && t == (uint32_t)info.eos) {
                live[s] = 0;
                continue;
            }
            char piece[256];
            size_t len = 0;
            if ((st = llmrt_token_to_piece(model, t, piece, sizeof piece, &len)) != LLMRT_OK) {
                rc = fail("piece", st);
                goto done;
            }
            if (!append(&out[s], piece, len)) {
                fprintf(stderr, "parallel: out of memory\n");
                rc = 1;
                goto done;
            }
            toks[m] = t;
            seqs[m] = s;
            m++;
        }
        if (m == 0 || step + 1 == n_predict) break; /* the last tokens need no logits */
        /* logits = NULL: each sequence's entry (its last) gets its logits. */
        if ((st = llmrt_batch(ctx, toks, seqs, NULL, m)) != LLMRT_OK) {
            rc = fail("batch", st);
            goto done;
        }
    }
    for (uint32_t s = 0; s < N_SEQ; s++) {
        printf("[%u] %s\n", s, out[s].data != NULL ? out[s].data : "");
    }

done:
    for (uint32_t s = 0; s < N_SEQ; s++) free(out[s].data);
    free(ids);
    llmrt_context_free(ctx);
    llmrt_model_free(model);
    return rc;
}
