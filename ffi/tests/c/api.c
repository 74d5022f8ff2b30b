/* api.c: the step-by-step API against the one-call API, on one model.
 *
 *   api MODEL PROMPT
 *
 * Prints the model info and the prompt's ids (the Rust test compares them with the
 * file's options and `llm-run tokenize`), then checks: loading from a buffer (copied
 * and borrowed) generates what loading from the path does; tokenize with/without BOS
 * and sizing; token pieces spell the prompt; eval → logits; the manual loop
 * sample → accept equals llmrt_generate; truncating the KV cache to a shared prefix
 * gives the logits of a fresh evaluation; greedy sampling is the argmax; a full
 * context, a callback stop, a re-entrant call. Prints "ok" at the end. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <stdint.h>

#define N_GEN 40

static llmrt_context *new_ctx(const llmrt_model *m, uint64_t seed, uint32_t n_ctx) {
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = 1;
    cp.n_ctx = n_ctx;
    cp.sampler.seed = seed;
    llmrt_context *c = NULL;
    OK(llmrt_context_new(m, &cp, &c));
    CHECK(c != NULL, "context");
    return c;
}

/* The text llmrt_generate gives for the prompt, on a fresh context. */
static text_buf generated(const llmrt_model *m, const char *prompt, uint64_t seed) {
    llmrt_context *c = new_ctx(m, seed, 0);
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = N_GEN;
    text_buf t = {0};
    llmrt_generation g;
    OK(llmrt_generate(c, prompt, strlen(prompt), &gp, collect_piece, &t, &g));
    CHECK(g.n_generated <= N_GEN, "n_generated %u", g.n_generated);
    CHECK(g.stop_reason == LLMRT_STOP_MAX_TOKENS || g.stop_reason == LLMRT_STOP_EOS,
          "stop reason %d", g.stop_reason);
    OK(llmrt_context_free(c));
    if (t.data == NULL) text_push(&t, "", 0);
    return t;
}

static float max_abs_diff(const float *a, const float *b, size_t n, float *scale) {
    float d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        s = fmaxf(s, fabsf(b[i]));
    }
    *scale = s;
    return d;
}

typedef struct {
    llmrt_context *ctx;
    int pieces, stop_after, reentrant_status;
} stopper;

static int32_t stop_after(const char *piece, size_t len, void *user_data) {
    stopper *s = (stopper *)user_data;
    (void)piece;
    (void)len;
    uint32_t t = 0;
    /* The context is busy with this very generation: a re-entrant call must refuse. */
    s->reentrant_status = llmrt_eval(s->ctx, &t, 1);
    return ++s->pieces >= s->stop_after;
}

int main(int argc, char **argv) {
    CHECK(argc == 3, "usage: api MODEL PROMPT");
    const char *path = argv[1], *prompt = argv[2];
    size_t plen = strlen(prompt);

    /* Version. */
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", LLMRT_VERSION_MAJOR, LLMRT_VERSION_MINOR,
             LLMRT_VERSION_PATCH);
    CHECK(strcmp(llmrt_version(), want) == 0, "version %s vs header %s", llmrt_version(), want);
    CHECK(llmrt_version_number() == LLMRT_VERSION_NUMBER, "version number");

    llmrt_model *m = NULL;
    OK(llmrt_model_load(path, &m));
    llmrt_model_info info;
    OK(llmrt_model_get_info(m, &info));
    printf("vocab_size=%u d_model=%u n_layers=%u n_heads=%u n_kv_heads=%u d_ff=%u "
           "context_length=%u positions=%s norm=%s mlp=%s bias=%d tied=%d dtype=%s "
           "tokenizer=%s bos=%d eos=%d add_bos=%d\n",
           info.vocab_size, info.d_model, info.n_layers, info.n_heads, info.n_kv_heads,
           info.d_ff, info.context_length, info.positions, info.norm, info.mlp, info.bias,
           info.tied_embeddings, info.dtype, info.tokenizer, info.bos, info.eos,
           info.add_bos);
    size_t fsize = 0;
    unsigned char *bytes = read_file(path, &fsize);
    CHECK(info.file_size == fsize, "file_size %llu vs %zu", (unsigned long long)info.file_size,
          fsize);

    /* Tokenize: size query, then the ids; with and without BOS. */
    size_t n = 0;
    FAILS(LLMRT_ERR_BUFFER_TOO_SMALL,
          llmrt_tokenize(m, prompt, plen, LLMRT_BOS_DEFAULT, NULL, 0, &n));
    CHECK(n > 0, "no tokens");
    uint32_t *ids = (uint32_t *)malloc(n * sizeof *ids);
    size_t n2 = 0;
    OK(llmrt_tokenize(m, prompt, plen, LLMRT_BOS_DEFAULT, ids, n, &n2));
    CHECK(n2 == n, "count changed");
    printf("tokens=");
    for (size_t i = 0; i < n; i++) printf(i ? " %u" : "%u", ids[i]);
    printf("\n");
    uint32_t bos_ids[512], plain[512];
    size_t nb = 0, np = 0;
    OK(llmrt_tokenize(m, prompt, plen, 1, bos_ids, 512, &nb));
    OK(llmrt_tokenize(m, prompt, plen, 0, plain, 512, &np));
    if (info.bos >= 0) {
        CHECK(nb == np + 1 && bos_ids[0] == (uint32_t)info.bos, "BOS not first");
        CHECK(memcmp(bos_ids + 1, plain, np * sizeof *plain) == 0, "BOS changed the rest");
    } else {
        CHECK(nb == np, "BOS added without a BOS token");
    }

    /* Token pieces spell the prompt (SentencePiece adds its dummy-prefix space). */
    text_buf spelled = {0};
    for (size_t i = 0; i < np; i++) {
        char piece[64];
        size_t len = 0;
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_token_to_piece(m, plain[i], piece, 0, &len));
        OK(llmrt_token_to_piece(m, plain[i], piece, len + 1, &len));
        CHECK(piece[len] == '\0', "piece not terminated");
        text_push(&spelled, piece, len);
    }
    const char *sp = spelled.data;
    if (strcmp(info.tokenizer, "sentencepiece") == 0 && sp[0] == ' ') sp++;
    CHECK(strcmp(sp, prompt) == 0, "pieces spell '%s', not '%s'", sp, prompt);
    text_free(&spelled);

    /* The same model from a copied buffer and from a borrowed aligned one. */
    text_buf ref = generated(m, prompt, 7);
    {
        unsigned char *copy = (unsigned char *)malloc(fsize);
        memcpy(copy, bytes, fsize);
        llmrt_model *mb = NULL;
        OK(llmrt_model_load_from_buffer(copy, fsize, &mb));
        memset(copy, 0xAB, fsize); /* the model must not read it any more */
        free(copy);
        text_buf t = generated(mb, prompt, 7);
        CHECK(strcmp(t.data, ref.data) == 0, "buffer model differs");
        text_free(&t);
        OK(llmrt_model_free(mb));

        size_t padded = (fsize + 63) / 64 * 64;
        unsigned char *aligned = (unsigned char *)aligned_alloc(64, padded);
        memcpy(aligned, bytes, fsize);
        OK(llmrt_model_load_from_buffer_nocopy(aligned, fsize, &mb));
        t = generated(mb, prompt, 7);
        CHECK(strcmp(t.data, ref.data) == 0, "borrowed-buffer model differs");
        text_free(&t);
        OK(llmrt_model_free(mb));
        free(aligned);
    }

    /* Eval → logits. */
    llmrt_context *c = new_ctx(m, 7, 0);
    uint32_t tok = 0;
    FAILS(LLMRT_ERR_NO_LOGITS, llmrt_sample(c, &tok));
    OK(llmrt_eval(c, ids, n));
    size_t nv = 0;
    FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_get_logits(c, NULL, 0, &nv));
    CHECK(nv == info.vocab_size, "logits count %zu", nv);
    float *logits = (float *)malloc(nv * sizeof *logits);
    OK(llmrt_get_logits(c, logits, nv, &nv));
    int varied = 0;
    for (size_t i = 0; i < nv; i++) {
        CHECK(isfinite(logits[i]), "logit %zu not finite", i);
        varied |= logits[i] != logits[0];
    }
    CHECK(varied, "all logits equal");
    size_t have = 0;
    FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_context_tokens(c, NULL, 0, &have));
    CHECK(have == n, "context holds %zu tokens, not %zu", have, n);

    /* The manual loop: sample → (EOS ends) → accept, text whole UTF-8 each time. */
    text_buf manual = {0};
    text_push(&manual, "", 0);
    for (int i = 0; i < N_GEN; i++) {
        OK(llmrt_sample(c, &tok));
        if (info.eos >= 0 && tok == (uint32_t)info.eos) break;
        char piece[64];
        size_t len = 0;
        OK(llmrt_accept(c, tok, piece, sizeof piece, &len));
        CHECK(piece[len] == '\0' && utf8_valid((unsigned char *)piece, len), "accept text");
        text_push(&manual, piece, len);
    }
    {
        char rest[16];
        size_t len = 0;
        OK(llmrt_accept_finish(c, rest, sizeof rest, &len));
        text_push(&manual, rest, len);
    }
    CHECK(strcmp(manual.data, ref.data) == 0, "manual loop '%s' vs generate '%s'", manual.data,
          ref.data);
    text_free(&manual);

    /* KV truncation: prefix P, then X, cut back to P, then Y == fresh P + Y. */
    {
        size_t p = n > 2 ? n - 2 : 1;
        uint32_t x[3] = {ids[0], ids[n - 1], ids[0]};
        uint32_t y[2] = {ids[n - 1], ids[0]};
        OK(llmrt_kv_reset(c));
        OK(llmrt_context_tokens(c, NULL, 0, &have));
        CHECK(have == 0, "reset left %zu tokens", have);
        OK(llmrt_eval(c, ids, p));
        OK(llmrt_eval(c, x, 3));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_kv_truncate(c, p + 4));
        OK(llmrt_kv_truncate(c, p));
        size_t none = 0;
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits(c, logits, nv, &none));
        OK(llmrt_eval(c, y, 2));
        float *cut = (float *)malloc(nv * sizeof *cut);
        OK(llmrt_get_logits(c, cut, nv, &nv));
        uint32_t kept[520];
        OK(llmrt_context_tokens(c, kept, 520, &have));
        CHECK(have == p + 2 && kept[p] == y[0] && kept[p + 1] == y[1], "cache after cut");

        llmrt_context *fresh = new_ctx(m, 7, 0);
        OK(llmrt_eval(fresh, ids, p));
        OK(llmrt_eval(fresh, y, 2));
        OK(llmrt_get_logits(fresh, logits, nv, &nv));
        float scale = 0, d = max_abs_diff(cut, logits, nv, &scale);
        CHECK(d <= 1e-4f * scale + 1e-6f, "truncated cache differs by %g (scale %g)", d, scale);

        /* Greedy sampling is the argmax. */
        llmrt_sampler_params sp_ = llmrt_sampler_default_params();
        sp_.temperature = 0;
        OK(llmrt_set_sampler(fresh, &sp_));
        OK(llmrt_sample(fresh, &tok));
        size_t best = 0;
        for (size_t i = 1; i < nv; i++)
            if (logits[i] > logits[best]) best = i;
        CHECK(tok == best, "greedy %u vs argmax %zu", tok, best);
        OK(llmrt_context_free(fresh));
        free(cut);
    }
    OK(llmrt_context_free(c));

    /* A full context: eval refuses; generation shifts a context of 4+ tokens, and
     * stops with CONTEXT_FULL in one too short to shift (3). */
    {
        llmrt_context *small = new_ctx(m, 7, 3);
        size_t n_ctx = 0;
        OK(llmrt_context_n_ctx(small, &n_ctx));
        CHECK(n_ctx == 3, "n_ctx %zu", n_ctx);
        uint32_t five[5] = {ids[0], ids[0], ids[0], ids[0], ids[0]};
        FAILS(LLMRT_ERR_CONTEXT_FULL, llmrt_eval(small, five, 4));
        llmrt_generate_params gp = llmrt_generate_default_params();
        gp.n_predict = 100;
        gp.ignore_eos = 1;
        llmrt_generation g;
        OK(llmrt_generate_tokens(small, five, 2, &gp, NULL, NULL, &g));
        CHECK(g.stop_reason == LLMRT_STOP_CONTEXT_FULL && g.n_generated == 2,
              "reason %d, %u generated", g.stop_reason, g.n_generated);
        OK(llmrt_context_free(small));
        llmrt_context *shifting = new_ctx(m, 7, 8);
        OK(llmrt_generate_tokens(shifting, five, 2, &gp, NULL, NULL, &g));
        CHECK(g.stop_reason == LLMRT_STOP_MAX_TOKENS && g.n_generated == 100,
              "shifting: reason %d, %u generated", g.stop_reason, g.n_generated);
        OK(llmrt_context_tokens(shifting, NULL, 0, &have) == LLMRT_ERR_BUFFER_TOO_SMALL ? LLMRT_OK : -99);
        CHECK(have <= 8, "cache holds %zu of 8", have);
        OK(llmrt_context_free(shifting));
    }

    /* The callback stops generation; a re-entrant call on the busy context refuses. */
    {
        llmrt_context *cc = new_ctx(m, 7, 0);
        stopper s = {cc, 0, 3, LLMRT_OK};
        llmrt_generate_params gp = llmrt_generate_default_params();
        gp.n_predict = 100;
        gp.ignore_eos = 1;
        llmrt_generation g;
        OK(llmrt_generate(cc, prompt, plen, &gp, stop_after, &s, &g));
        CHECK(g.stop_reason == LLMRT_STOP_CALLBACK && s.pieces == 3, "reason %d after %d pieces",
              g.stop_reason, s.pieces);
        CHECK(s.reentrant_status == LLMRT_ERR_BUSY, "re-entrant eval gave %s",
              llmrt_status_name(s.reentrant_status));
        OK(llmrt_context_free(cc));
    }

    text_free(&ref);
    free(logits);
    free(ids);
    free(bytes);
    OK(llmrt_model_free(m));
    printf("ok\n");
    return 0;
}
