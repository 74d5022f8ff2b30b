/* abuse.c: every entry point given NULL, garbage handles, bad sizes, invalid UTF-8,
 * out-of-range ids, missing or corrupt files: each must return its error code with
 * a message, and none may crash.
 *
 *   abuse MODEL DIR          (DIR: a scratch directory for corrupt files)
 *   abuse MODEL DIR --oom    (also: a context too large for memory, under a 3 GiB
 *                             address-space limit; not for valgrind/ASan)
 * Prints "ok". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <sys/resource.h>

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    CHECK(fwrite(data, 1, len, f) == len, "write");
    fclose(f);
}

/* A progress callback: counts its calls in *user_data and stops at the second;
 * with no user data, never stops. */
static int32_t stop_at_second_call(float progress, void *user_data) {
    CHECK(progress >= 0.0f && progress <= 1.0f, "progress %f", (double)progress);
    if (user_data == NULL) return 0;
    int *calls = (int *)user_data;
    return ++*calls >= 2;
}

int main(int argc, char **argv) {
    CHECK(argc == 3 || argc == 4, "usage: abuse MODEL DIR [--oom]");
    const char *path = argv[1], *dir = argv[2];
    int oom = argc == 4 && strcmp(argv[3], "--oom") == 0;
    char tmp[4096];

    /* Functions that cannot fail still answer sensibly. */
    CHECK(strcmp(llmrt_status_name(12345), "unknown status") == 0, "status name");
    CHECK(strcmp(llmrt_status_name(LLMRT_ERR_UTF8), "LLMRT_ERR_UTF8") == 0, "status name");
    CHECK(llmrt_version() != NULL && llmrt_last_error() != NULL, "static strings");

    /* Loading. */
    llmrt_model *m = (llmrt_model *)0x1;
    FAILS(LLMRT_ERR_NULL, llmrt_model_load(NULL, &m));
    CHECK(m == NULL, "out not cleared on failure");
    FAILS(LLMRT_ERR_NULL, llmrt_model_load(path, NULL));
    FAILS(LLMRT_ERR_IO, llmrt_model_load("/nonexistent/model.llm", &m));
    FAILS(LLMRT_ERR_IO, llmrt_model_load(dir, &m));
    snprintf(tmp, sizeof tmp, "%s/garbage.llm", dir);
    write_file(tmp, "this is not a model file at all", 31);
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load(tmp, &m));
    snprintf(tmp, sizeof tmp, "%s/empty.llm", dir);
    write_file(tmp, "", 0);
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load(tmp, &m));
    size_t fsize = 0;
    unsigned char *bytes = read_file(path, &fsize);
    /* Truncated, and with a flipped byte in the header/directory region. */
    snprintf(tmp, sizeof tmp, "%s/truncated.llm", dir);
    write_file(tmp, bytes, fsize / 2);
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load(tmp, &m));
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load_from_buffer(bytes, fsize / 2, &m));
    bytes[40] ^= 0x5A;
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load_from_buffer(bytes, fsize, &m));
    bytes[40] ^= 0x5A;
    FAILS(LLMRT_ERR_NULL, llmrt_model_load_from_buffer(NULL, 100, &m));
    FAILS(LLMRT_ERR_NULL, llmrt_model_load_from_buffer(bytes, fsize, NULL));
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load_from_buffer(bytes, 0, &m));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_model_load_from_buffer(bytes, SIZE_MAX, &m));
    FAILS(LLMRT_ERR_NULL, llmrt_model_load_from_buffer_nocopy(NULL, 10, &m));
    FAILS(LLMRT_ERR_FORMAT, llmrt_model_load_from_buffer_nocopy("garbage!", 8, &m));
    CHECK(m == NULL, "out not cleared on failure");

    /* Loading with parameters (a progress callback that may stop the load). */
    {
        llmrt_model_params mp = llmrt_model_default_params();
        CHECK(mp.progress == NULL && mp.progress_user_data == NULL, "default model params");
        FAILS(LLMRT_ERR_NULL, llmrt_model_load_with_params(NULL, &mp, &m));
        FAILS(LLMRT_ERR_NULL, llmrt_model_load_with_params(path, &mp, NULL));
        FAILS(LLMRT_ERR_IO, llmrt_model_load_with_params("/nonexistent/model.llm", NULL, &m));
        snprintf(tmp, sizeof tmp, "%s/garbage.llm", dir);
        FAILS(LLMRT_ERR_FORMAT, llmrt_model_load_with_params(tmp, &mp, &m));
        int calls = 0;
        mp.progress = stop_at_second_call;
        mp.progress_user_data = &calls;
        FAILS(LLMRT_ERR_CANCELLED, llmrt_model_load_with_params(path, &mp, &m));
        CHECK(m == NULL && calls == 2, "stopped load: m %p after %d calls", (void *)m, calls);
        mp.progress_user_data = NULL; /* the callback then never stops */
        OK(llmrt_model_load_with_params(path, &mp, &m));
        OK(llmrt_model_free(m));
        m = NULL;
    }

    OK(llmrt_model_load(path, &m));
    llmrt_model_info info;
    OK(llmrt_model_get_info(m, &info));

    /* Handles: NULL, garbage, wrong type, double free. */
    int local = 0;
    llmrt_model *garbage_m = (llmrt_model *)&local;
    llmrt_context *garbage_c = (llmrt_context *)(uintptr_t)0xdeadbeef;
    OK(llmrt_model_free(NULL));
    OK(llmrt_context_free(NULL));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_free(garbage_m));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_context_free(garbage_c));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_context_free((llmrt_context *)m));
    FAILS(LLMRT_ERR_NULL, llmrt_model_get_info(NULL, &info));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_get_info(garbage_m, &info));
    FAILS(LLMRT_ERR_NULL, llmrt_model_get_info(m, NULL));
    {
        llmrt_model *m2 = NULL;
        OK(llmrt_model_load(path, &m2));
        OK(llmrt_model_free(m2));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_free(m2));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_get_info(m2, &info));
    }

    /* Tokenize and pieces. */
    uint32_t ids[64];
    size_t n = 0;
    const char bad_utf8[] = {'a', (char)0xC3, (char)0x28, 'b'};
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize(NULL, "a", 1, 0, ids, 64, &n));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_tokenize(garbage_m, "a", 1, 0, ids, 64, &n));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize(m, NULL, 5, 0, ids, 64, &n));
    FAILS(LLMRT_ERR_UTF8, llmrt_tokenize(m, bad_utf8, 4, 0, ids, 64, &n));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_tokenize(m, "a", 1, 7, ids, 64, &n));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_tokenize(m, "a", SIZE_MAX, 0, ids, 64, &n));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize(m, "a", 1, 0, ids, 64, NULL));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize(m, "ab", 2, 0, NULL, 64, &n));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize_special(NULL, "a", 1, 0, 1, ids, 64, &n));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_tokenize_special(garbage_m, "a", 1, 0, 1, ids, 64, &n));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize_special(m, NULL, 5, 0, 1, ids, 64, &n));
    FAILS(LLMRT_ERR_UTF8, llmrt_tokenize_special(m, bad_utf8, 4, 0, 1, ids, 64, &n));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_tokenize_special(m, "a", 1, 7, 1, ids, 64, &n));
    FAILS(LLMRT_ERR_NULL, llmrt_tokenize_special(m, "a", 1, 0, 1, ids, 64, NULL));
    FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_tokenize(m, "abab", 4, 1, ids, 1, &n));
    CHECK(n >= 2, "needed size not reported (%zu)", n);
    OK(llmrt_tokenize(m, NULL, 0, 0, ids, 64, &n));
    char piece[8];
    size_t len = 0;
    FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_token_to_piece(m, info.vocab_size, piece, 8, &len));
    FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_token_to_piece(m, UINT32_MAX, piece, 8, &len));
    FAILS(LLMRT_ERR_NULL, llmrt_token_to_piece(m, 0, NULL, 8, &len));
    FAILS(LLMRT_ERR_NULL, llmrt_token_to_piece(m, 0, piece, 8, NULL));
    FAILS(LLMRT_ERR_NULL, llmrt_token_to_piece(NULL, 0, piece, 8, &len));

    /* Chat templates (the test models have none of their own). */
    {
        llmrt_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "hi"}};
        llmrt_chat_message no_role[1] = {{NULL, "hi"}};
        llmrt_chat_message no_content[1] = {{"user", NULL}};
        llmrt_chat_message bad_text[1] = {{"user", "a\xC3\x28"}};
        const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                           "<|im_start|>assistant\n";
        char text[256];
        size_t tl = 0;
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(NULL, "chatml", msgs, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_BAD_HANDLE,
              llmrt_chat_apply_template(garbage_m, "chatml", msgs, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_chat_apply_template(m, NULL, msgs, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_INVALID_ARG,
              llmrt_chat_apply_template(m, "{% for %}", msgs, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_INVALID_ARG,
              llmrt_chat_apply_template(m, "{{ raise_exception('no') }}", msgs, 2, 1, text, 256, &tl));
        llmrt_chat_message assistant_first[1] = {{"assistant", "x"}};
        FAILS(LLMRT_ERR_INVALID_ARG,
              llmrt_chat_apply_template(m, "gemma", assistant_first, 1, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_UTF8, llmrt_chat_apply_template(m, "\xff", msgs, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(m, "chatml", NULL, 2, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_chat_apply_template(m, "chatml", msgs, SIZE_MAX, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(m, "chatml", no_role, 1, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(m, "chatml", no_content, 1, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_UTF8, llmrt_chat_apply_template(m, "chatml", bad_text, 1, 1, text, 256, &tl));
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(m, "chatml", msgs, 2, 1, NULL, 256, &tl));
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_chat_apply_template(m, "chatml", msgs, 2, 1, NULL, 0, &tl));
        CHECK(tl == strlen(want), "needed size %zu, wanted %zu", tl, strlen(want));
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL,
              llmrt_chat_apply_template(m, "chatml", msgs, 2, 1, text, strlen(want), &tl));
        FAILS(LLMRT_ERR_NULL, llmrt_chat_apply_template(m, "chatml", msgs, 2, 1, text, 256, NULL));
        OK(llmrt_chat_apply_template(m, "chatml", msgs, 2, 1, text, strlen(want) + 1, &tl));
        CHECK(tl == strlen(want) && strcmp(text, want) == 0, "rendered '%s'", text);
        OK(llmrt_chat_apply_template(m, "chatml", NULL, 0, 0, text, 256, &tl));
        CHECK(tl == 0 && text[0] == '\0', "empty conversation gave '%s'", text);
    }

    /* Contexts. */
    llmrt_context *c = (llmrt_context *)0x1;
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = 1;
    FAILS(LLMRT_ERR_NULL, llmrt_context_new(NULL, &cp, &c));
    CHECK(c == NULL, "out not cleared on failure");
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_context_new(garbage_m, &cp, &c));
    FAILS(LLMRT_ERR_NULL, llmrt_context_new(m, &cp, NULL));
    {
        llmrt_context_params bad = cp;
        bad.sampler.temperature = 0.0f / 0.0f;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        bad = cp;
        bad.sampler.repeat_penalty = 0;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        bad = cp;
        bad.n_threads = 1000000;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        bad = cp;
        bad.n_ctx = UINT32_MAX;
        llmrt_status st = llmrt_context_new(m, &bad, &c);
        CHECK(st == LLMRT_ERR_INVALID_ARG || st == LLMRT_ERR_NO_MEMORY, "huge n_ctx gave %s",
              llmrt_status_name(st));
        CHECK(llmrt_last_error()[0] != '\0', "no message");
    }
    OK(llmrt_context_new(m, NULL, &c));
    OK(llmrt_context_free(c));
    {
        /* The size of a context, before creating it. */
        uint64_t need = 0, need_default = 0;
        FAILS(LLMRT_ERR_NULL, llmrt_context_bytes_needed(NULL, &cp, &need));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_context_bytes_needed(garbage_m, &cp, &need));
        FAILS(LLMRT_ERR_NULL, llmrt_context_bytes_needed(m, &cp, NULL));
        llmrt_context_params bad = cp;
        bad.n_threads = 1000000;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_bytes_needed(m, &bad, &need));
        bad = cp;
        bad.n_ctx = UINT32_MAX;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_bytes_needed(m, &bad, &need));
        bad = cp;
        bad.sampler.top_p = 0.0f / 0.0f;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_bytes_needed(m, &bad, &need));
        OK(llmrt_context_bytes_needed(m, NULL, &need_default));
        OK(llmrt_context_bytes_needed(m, &cp, &need));
        CHECK(need == need_default && need > 0, "bytes needed %llu vs %llu",
              (unsigned long long)need, (unsigned long long)need_default);
    }
    {
        /* Logit bias and grammars in the sampler settings: NULL, garbage, bad values. */
        llmrt_context_params bad = cp;
        llmrt_logit_bias lb[2] = {{1, -INFINITY}, {UINT32_MAX, 1.0f}};
        bad.sampler.logit_bias = NULL;
        bad.sampler.n_logit_bias = 2;
        FAILS(LLMRT_ERR_NULL, llmrt_context_new(m, &bad, &c));
        bad.sampler.logit_bias = lb;
        bad.sampler.n_logit_bias = SIZE_MAX;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        bad.sampler.n_logit_bias = 2;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        CHECK(strstr(llmrt_last_error(), "logit_bias") != NULL, "message: %s", llmrt_last_error());
        lb[1].token = 0;
        lb[1].bias = 0.0f / 0.0f;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        lb[1].bias = INFINITY;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_bytes_needed(m, &bad, &(uint64_t){0}));
        bad = cp;
        bad.sampler.grammar_kind = 7;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        bad.sampler.grammar_kind = LLMRT_GRAMMAR_GBNF;
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_context_new(m, &bad, &c)); /* NULL, length 0: empty */
        bad.sampler.grammar = NULL;
        bad.sampler.grammar_len = 5;
        FAILS(LLMRT_ERR_NULL, llmrt_context_new(m, &bad, &c));
        bad.sampler.grammar = "\xff\xfe";
        bad.sampler.grammar_len = 2;
        FAILS(LLMRT_ERR_UTF8, llmrt_context_new(m, &bad, &c));
        const char *broken = "root ::= [lo";
        bad.sampler.grammar = broken;
        bad.sampler.grammar_len = strlen(broken);
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_context_new(m, &bad, &c));
        CHECK(strstr(llmrt_last_error(), "line 1, column 13") != NULL, "message: %s",
              llmrt_last_error());
        const char *endless = "root ::= \"l\" root";
        bad.sampler.grammar = endless;
        bad.sampler.grammar_len = strlen(endless);
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_context_new(m, &bad, &c));
        bad.sampler.grammar_kind = LLMRT_GRAMMAR_JSON_SCHEMA;
        const char *schema = "{\"type\": \"string\", \"pattern\": \"a*\"}";
        bad.sampler.grammar = schema;
        bad.sampler.grammar_len = strlen(schema);
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_context_new(m, &bad, &c));
        CHECK(strstr(llmrt_last_error(), "pattern") != NULL, "message: %s", llmrt_last_error());
        CHECK(c == NULL, "out not cleared on failure");
        CHECK(strcmp(llmrt_status_name(LLMRT_ERR_GRAMMAR), "LLMRT_ERR_GRAMMAR") == 0, "name");

        /* A grammar that holds: generation spells only 'l' and 'o', 3 to 8 of them,
           and ends with EOS once 8 are written (the grammar allows nothing more). */
        OK(llmrt_context_new(m, &cp, &c));
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_set_sampler(c, &bad.sampler));
        llmrt_sampler_params sp = cp.sampler;
        const char *lo = "root ::= [lo]{3,8}";
        sp.grammar_kind = LLMRT_GRAMMAR_GBNF;
        sp.grammar = lo;
        sp.grammar_len = strlen(lo);
        sp.logit_bias = lb;
        lb[1].bias = -1.0f;
        sp.n_logit_bias = 2;
        OK(llmrt_set_sampler(c, &sp));
        text_buf out = {NULL, 0, 0};
        llmrt_generation g;
        llmrt_generate_params gp = llmrt_generate_default_params();
        gp.n_predict = 40;
        OK(llmrt_generate(c, "hello", 5, &gp, collect_piece, &out, &g));
        CHECK(out.len >= 3 && out.len <= 8 && strspn(out.data, "lo") == out.len,
              "constrained text '%s'", out.data ? out.data : "");
        CHECK(g.stop_reason == LLMRT_STOP_EOS, "stop reason %d", g.stop_reason);
        text_free(&out);
        /* Step by step: "lo" exactly; a token that does not fit is refused. */
        const char *lo2 = "root ::= \"lo\"";
        sp.grammar = lo2;
        sp.grammar_len = strlen(lo2);
        OK(llmrt_set_sampler(c, &sp));
        OK(llmrt_kv_reset(c));
        uint32_t ids[16], tok = 0;
        size_t n = 0;
        OK(llmrt_tokenize(m, "hello", 5, 0, ids, 16, &n));
        OK(llmrt_eval(c, ids, n));
        OK(llmrt_tokenize(m, "o", 1, 0, ids, 16, &n));
        FAILS(LLMRT_ERR_GRAMMAR, llmrt_accept(c, ids[n - 1], NULL, 0, NULL));
        char text[64];
        size_t tl = 0, total = 0;
        char all[64] = {0};
        for (int i = 0; i < 8; i++) {
            OK(llmrt_sample(c, &tok));
            OK(llmrt_accept(c, tok, text, sizeof text, &tl));
            if (tl == 0 && total == 2)
                break; /* EOS */
            memcpy(all + total, text, tl);
            total += tl;
        }
        CHECK(strcmp(all, "lo") == 0, "step-by-step constrained text '%s'", all);
        OK(llmrt_context_free(c));
    }
    OK(llmrt_context_new(m, &cp, &c));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_free((llmrt_model *)c));
    {
        /* Threads on a live context. */
        uint32_t th = 0;
        FAILS(LLMRT_ERR_NULL, llmrt_set_threads(NULL, 1));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_set_threads(garbage_c, 1));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_set_threads(c, 1000000));
        FAILS(LLMRT_ERR_NULL, llmrt_get_threads(c, NULL));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_get_threads(garbage_c, &th));
        OK(llmrt_set_threads(c, 2));
        OK(llmrt_get_threads(c, &th));
        CHECK(th == 2, "threads %u", th);
        OK(llmrt_set_threads(c, 1));
    }

    uint32_t tok = 0;
    float logits[4];
    size_t nn = 0;
    FAILS(LLMRT_ERR_NULL, llmrt_set_sampler(c, NULL));
    FAILS(LLMRT_ERR_NULL, llmrt_set_sampler(NULL, &cp.sampler));
    FAILS(LLMRT_ERR_NULL, llmrt_context_n_ctx(c, NULL));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_context_n_ctx(garbage_c, &nn));
    FAILS(LLMRT_ERR_NULL, llmrt_context_tokens(c, ids, 64, NULL));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_kv_reset(garbage_c));
    FAILS(LLMRT_ERR_NULL, llmrt_kv_reset(NULL));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_kv_truncate(c, 1));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_kv_truncate(garbage_c, 0));
    FAILS(LLMRT_ERR_NULL, llmrt_eval(c, NULL, 3));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_eval(c, ids, 0));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_eval(c, ids, SIZE_MAX));
    {
        uint32_t bad[2] = {0, info.vocab_size};
        FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_eval(c, bad, 2));
        OK(llmrt_context_tokens(c, NULL, 0, &nn));
        CHECK(nn == 0, "a failed eval changed the cache");
    }
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_eval(garbage_c, ids, 1));
    FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits(c, logits, 4, &nn));
    FAILS(LLMRT_ERR_NO_LOGITS, llmrt_sample(c, &tok));
    FAILS(LLMRT_ERR_NULL, llmrt_sample(c, NULL));
    FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_accept(c, info.vocab_size, piece, 8, &len));
    FAILS(LLMRT_ERR_NULL, llmrt_accept(NULL, 0, piece, 8, &len));
    tok = 0;
    OK(llmrt_eval(c, &tok, 1));
    FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_get_logits(c, logits, 4, &nn));
    CHECK(nn == info.vocab_size, "needed size %zu", nn);
    FAILS(LLMRT_ERR_NULL, llmrt_get_logits(c, NULL, 1000000, &nn));
    {
        /* Too small a text buffer: the size needed, and nothing accepted. */
        uint32_t t = info.bos >= 0 ? 265 : 5; /* "e" in the SentencePiece test model, "c" in the char one */
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_accept(c, t, piece, 0, &len));
        CHECK(len >= 1, "needed size not reported");
        OK(llmrt_context_tokens(c, NULL, 0, &nn) == LLMRT_ERR_BUFFER_TOO_SMALL ? LLMRT_OK : -99);
        CHECK(nn == 1, "a refused accept changed the cache (%zu tokens)", nn);
        OK(llmrt_accept(c, t, piece, sizeof piece, &len));
        OK(llmrt_accept_finish(c, piece, sizeof piece, &len));
    }
    {
        /* Every position's logits. */
        float row[4];
        FAILS(LLMRT_ERR_NULL, llmrt_eval_all(NULL, ids, 1));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_eval_all(garbage_c, ids, 1));
        FAILS(LLMRT_ERR_NULL, llmrt_eval_all(c, NULL, 3));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_eval_all(c, ids, 0));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_eval_all(c, ids, SIZE_MAX));
        uint32_t bad[2] = {0, info.vocab_size};
        FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_eval_all(c, bad, 2));
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_ith(NULL, 0, row, 4, &nn));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_get_logits_ith(garbage_c, 0, row, 4, &nn));
        OK(llmrt_kv_reset(c));
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits_ith(c, -1, row, 4, &nn));
        uint32_t two[2] = {1, 2};
        OK(llmrt_eval_all(c, two, 2));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, 2, row, 4, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, -3, row, 4, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, INT64_MIN, row, 4, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, INT64_MAX, row, 4, &nn));
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_get_logits_ith(c, 0, row, 4, &nn));
        CHECK(nn == info.vocab_size, "needed size %zu", nn);
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_ith(c, 0, NULL, 1000000, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_ith(c, 0, row, 4, NULL));
        OK(llmrt_kv_reset(c));
    }
    {
        /* Embeddings. */
        size_t d = 0;
        float *vec = (float *)malloc(info.d_model * sizeof(float));
        CHECK(vec != NULL, "out of memory");
        FAILS(LLMRT_ERR_NULL, llmrt_embed(NULL, "ab", 2, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_BAD_HANDLE,
              llmrt_embed(garbage_c, "ab", 2, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_NULL, llmrt_embed(c, NULL, 2, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_UTF8, llmrt_embed(c, bad_utf8, 4, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_INVALID_ARG,
              llmrt_embed(c, "ab", SIZE_MAX, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_embed(c, "ab", 2, 3, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_embed(c, "ab", 2, -1, 1, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_NULL, llmrt_embed(c, "ab", 2, LLMRT_POOLING_MEAN, 1, vec, info.d_model, NULL));
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_embed(c, "ab", 2, LLMRT_POOLING_LAST, 0, NULL, 0, &d));
        CHECK(d == info.d_model, "needed size %zu", d);
        FAILS(LLMRT_ERR_NULL, llmrt_embed(c, "ab", 2, LLMRT_POOLING_LAST, 0, NULL, 1000000, &d));
        uint32_t bad[2] = {0, UINT32_MAX};
        FAILS(LLMRT_ERR_BAD_TOKEN,
              llmrt_embed_tokens(c, bad, 2, LLMRT_POOLING_FIRST, 0, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_NULL, llmrt_embed_tokens(c, NULL, 2, LLMRT_POOLING_FIRST, 0, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_INVALID_ARG,
              llmrt_embed_tokens(c, ids, 0, LLMRT_POOLING_FIRST, 0, vec, info.d_model, &d));
        FAILS(LLMRT_ERR_BAD_HANDLE,
              llmrt_embed_tokens(garbage_c, ids, 1, LLMRT_POOLING_FIRST, 0, vec, info.d_model, &d));
        size_t n_ctx = 0;
        OK(llmrt_context_n_ctx(c, &n_ctx));
        uint32_t *many = (uint32_t *)calloc(n_ctx + 1, sizeof(uint32_t));
        CHECK(many != NULL, "out of memory");
        FAILS(LLMRT_ERR_CONTEXT_FULL,
              llmrt_embed_tokens(c, many, n_ctx + 1, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        free(many);
        OK(llmrt_embed(c, "ab", 2, LLMRT_POOLING_MEAN, 1, vec, info.d_model, &d));
        double len2 = 0;
        for (size_t j = 0; j < d; j++) len2 += (double)vec[j] * vec[j];
        CHECK(len2 > 0.999 && len2 < 1.001, "normalised length^2 %f", len2);
        free(vec);
        OK(llmrt_kv_reset(c));
        tok = 0;
        OK(llmrt_eval(c, &tok, 1));
    }
    FAILS(LLMRT_ERR_NULL, llmrt_cancel(NULL));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_cancel(garbage_c));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_accept_finish(garbage_c, piece, 8, &len));

    /* Generation. */
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = 4;
    llmrt_generation g;
    FAILS(LLMRT_ERR_NULL, llmrt_generate(NULL, "ab", 2, &gp, NULL, NULL, &g));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_generate(garbage_c, "ab", 2, &gp, NULL, NULL, &g));
    FAILS(LLMRT_ERR_NULL, llmrt_generate(c, NULL, 2, &gp, NULL, NULL, &g));
    FAILS(LLMRT_ERR_UTF8, llmrt_generate(c, bad_utf8, 4, &gp, NULL, NULL, &g));
    {
        llmrt_generate_params bad = gp;
        bad.add_bos = 0;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_generate(c, "", 0, &bad, NULL, NULL, &g));
        bad.add_bos = 3;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_generate(c, "ab", 2, &bad, NULL, NULL, &g));
        bad = gp;
        bad.n_stop = 2;
        FAILS(LLMRT_ERR_NULL, llmrt_generate(c, "ab", 2, &bad, NULL, NULL, &g));
        const char *stops[2] = {"x", NULL};
        bad.stop = stops;
        FAILS(LLMRT_ERR_NULL, llmrt_generate(c, "ab", 2, &bad, NULL, NULL, &g));
        const char bad_stop[] = {(char)0xFF, 0};
        stops[1] = bad_stop;
        FAILS(LLMRT_ERR_UTF8, llmrt_generate(c, "ab", 2, &bad, NULL, NULL, &g));
    }
    {
        uint32_t bad[1] = {UINT32_MAX};
        FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_generate_tokens(c, bad, 1, &gp, NULL, NULL, &g));
        FAILS(LLMRT_ERR_NULL, llmrt_generate_tokens(c, NULL, 1, &gp, NULL, NULL, &g));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_generate_tokens(c, ids, 0, &gp, NULL, NULL, &g));
    }
    /* Still usable after all that. */
    OK(llmrt_kv_reset(c));
    OK(llmrt_generate(c, "ab", 2, NULL, NULL, NULL, NULL));
    OK(llmrt_context_free(c));

    /* Several sequences: NULL, garbage handles, sequences out of range, bad sizes
     * and ids are refused with nothing changed; a state file refuses to hold more
     * than sequence 0. */
    {
        llmrt_context_params sp = cp;
        sp.n_seq = 1000;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &sp, &c));
        CHECK(c == NULL, "out not cleared on failure");
        sp.n_seq = 4;
        sp.n_ctx = 3;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &sp, &c));
        uint64_t need = 0;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_bytes_needed(m, &sp, &need));
        sp.n_ctx = 4 * 16;
        OK(llmrt_context_new(m, &sp, &c));
        uint32_t t3[3] = {1, 2, 3}, s3[3] = {0, 3, 1}, sbad[3] = {0, 4, 1};
        uint32_t tbad[3] = {1, info.vocab_size, 3}, got[20];
        uint8_t w3[3] = {1, 0, 7};
        float *row = malloc(info.vocab_size * sizeof *row);
        CHECK(row != NULL, "malloc");
        FAILS(LLMRT_ERR_NULL, llmrt_batch(NULL, t3, s3, w3, 3));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_batch(garbage_c, t3, s3, w3, 3));
        FAILS(LLMRT_ERR_NULL, llmrt_batch(c, NULL, s3, w3, 3));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_batch(c, t3, s3, w3, 0));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_batch(c, t3, s3, w3, SIZE_MAX));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_batch(c, t3, sbad, w3, 3));
        FAILS(LLMRT_ERR_BAD_TOKEN, llmrt_batch(c, tbad, s3, w3, 3));
        {
            uint32_t many[17] = {0};
            FAILS(LLMRT_ERR_CONTEXT_FULL, llmrt_batch(c, many, NULL, NULL, 17));
        }
        for (uint32_t s = 0; s < 4; s++) {
            OK(llmrt_seq_tokens(c, s, NULL, 0, &nn));
            CHECK(nn == 0, "a refused batch changed sequence %u", s);
        }
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits_seq(c, 1, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_sample_seq(c, 1, &tok));
        OK(llmrt_batch(c, t3, s3, w3, 3));
        OK(llmrt_get_logits_ith(c, 0, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits_ith(c, 1, row, info.vocab_size, &nn));
        OK(llmrt_get_logits_ith(c, -1, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, 3, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_ith(c, INT64_MIN, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_seq(NULL, 0, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_get_logits_seq(garbage_c, 0, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_seq(c, 4, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_get_logits_seq(c, UINT32_MAX, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_BUFFER_TOO_SMALL, llmrt_get_logits_seq(c, 1, row, 4, &nn));
        CHECK(nn == info.vocab_size, "needed size %zu", nn);
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_seq(c, 1, NULL, 1000000, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_get_logits_seq(c, 1, row, info.vocab_size, NULL));
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits_seq(c, 3, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NO_LOGITS, llmrt_get_logits_seq(c, 2, row, info.vocab_size, &nn));
        OK(llmrt_get_logits_seq(c, 1, row, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_sample_seq(NULL, 1, &tok));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_sample_seq(garbage_c, 1, &tok));
        FAILS(LLMRT_ERR_NULL, llmrt_sample_seq(c, 1, NULL));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_sample_seq(c, 9, &tok));
        OK(llmrt_sample_seq(c, 1, &tok));
        CHECK(tok < info.vocab_size, "sampled %u", tok);
        FAILS(LLMRT_ERR_NULL, llmrt_seq_set_sampler(NULL, 1, &cp.sampler));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_seq_set_sampler(garbage_c, 1, &cp.sampler));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_set_sampler(c, 1, NULL));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_set_sampler(c, 4, &cp.sampler));
        {
            llmrt_sampler_params bad = cp.sampler;
            bad.top_p = 2.0f;
            FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_set_sampler(c, 1, &bad));
        }
        OK(llmrt_seq_set_sampler(c, 1, &cp.sampler));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_copy(NULL, 0, 1));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_seq_copy(garbage_c, 0, 1));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_copy(c, 0, 4));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_copy(c, UINT32_MAX, 0));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_remove(NULL, 0));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_seq_remove(garbage_c, 0));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_remove(c, 4));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_truncate(NULL, 0, 0));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_seq_truncate(garbage_c, 0, 0));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_truncate(c, 4, 0));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_truncate(c, 1, 2));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_tokens(NULL, 0, got, 20, &nn));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_seq_tokens(garbage_c, 0, got, 20, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_tokens(c, 0, got, 20, NULL));
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_seq_tokens(c, 4, got, 20, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_seq_tokens(c, 1, NULL, 20, &nn));
        OK(llmrt_seq_copy(c, 1, 2));
        OK(llmrt_seq_tokens(c, 2, got, 20, &nn));
        CHECK(nn == 1 && got[0] == 3, "copied %zu tokens", nn);
        OK(llmrt_get_logits_seq(c, 2, row, info.vocab_size, &nn));
        char state[4096];
        snprintf(state, sizeof state, "%s/seq-state.kv", dir);
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_state_save(c, state));
        OK(llmrt_seq_remove(c, 1));
        OK(llmrt_seq_remove(c, 2));
        OK(llmrt_seq_truncate(c, 3, 0));
        OK(llmrt_state_save(c, state));
        free(row);
        OK(llmrt_context_free(c));
    }

    /* KV cache types and state files: a bad type is refused; a state saved after a
     * prompt restores its tokens and logits exactly; NULL, garbage handles, missing
     * paths, junk, a truncated file and a state of another cache type are refused
     * with the context unchanged. */
    {
        llmrt_context_params bad = cp;
        bad.cache_type = 7;
        FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &bad, &c));
        CHECK(c == NULL, "out not cleared on failure");
        OK(llmrt_context_new(m, &cp, &c));
        char state[4096], junk[4096];
        snprintf(state, sizeof state, "%s/state.kv", dir);
        snprintf(junk, sizeof junk, "%s/junk.kv", dir);
        uint32_t p3[3] = {1, 2, 3}, got[8];
        OK(llmrt_eval(c, p3, 3));
        float *want = malloc(info.vocab_size * sizeof *want);
        float *now = malloc(info.vocab_size * sizeof *now);
        CHECK(want && now, "malloc");
        OK(llmrt_get_logits(c, want, info.vocab_size, &nn));
        FAILS(LLMRT_ERR_NULL, llmrt_state_save(c, NULL));
        FAILS(LLMRT_ERR_NULL, llmrt_state_load(c, NULL));
        FAILS(LLMRT_ERR_NULL, llmrt_state_save(NULL, state));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_state_save(garbage_c, state));
        FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_state_load(garbage_c, state));
        FAILS(LLMRT_ERR_IO, llmrt_state_save(c, "/nonexistent/state.kv"));
        FAILS(LLMRT_ERR_IO, llmrt_state_load(c, "/nonexistent/state.kv"));
        OK(llmrt_state_save(c, state));
        OK(llmrt_kv_reset(c));
        OK(llmrt_eval(c, p3, 1));
        write_file(junk, "not a state file", 16);
        FAILS(LLMRT_ERR_FORMAT, llmrt_state_load(c, junk));
        size_t ssize = 0;
        unsigned char *sbytes = read_file(state, &ssize);
        write_file(junk, sbytes, ssize - 1);
        FAILS(LLMRT_ERR_FORMAT, llmrt_state_load(c, junk));
        OK(llmrt_context_tokens(c, got, 8, &nn));
        CHECK(nn == 1 && got[0] == 1, "a refused load changed the cache (%zu tokens)", nn);
        OK(llmrt_state_load(c, state));
        OK(llmrt_context_tokens(c, got, 8, &nn));
        CHECK(nn == 3 && got[0] == 1 && got[2] == 3, "restored %zu tokens", nn);
        OK(llmrt_get_logits(c, now, info.vocab_size, &nn));
        CHECK(memcmp(now, want, info.vocab_size * sizeof *now) == 0, "restored logits differ");
        OK(llmrt_sample(c, &tok));
        llmrt_context *c32 = NULL;
        bad = cp;
        bad.cache_type = LLMRT_CACHE_F32;
        OK(llmrt_context_new(m, &bad, &c32));
        FAILS(LLMRT_ERR_FORMAT, llmrt_state_load(c32, state));
        OK(llmrt_context_free(c32));
        free(sbytes);
        free(want);
        free(now);
        OK(llmrt_context_free(c));
    }

    if (oom) {
        /* A context far larger than the address space allowed: an error, not an abort. */
        struct rlimit lim = {3ull << 30, 3ull << 30};
        CHECK(setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit");
        llmrt_context_params big = cp;
        big.n_ctx = 8u << 20;
        FAILS(LLMRT_ERR_NO_MEMORY, llmrt_context_new(m, &big, &c));
        OK(llmrt_context_new(m, &cp, &c));
        OK(llmrt_context_free(c));
    }
    free(bytes);
    OK(llmrt_model_free(m));
    printf("ok\n");
    return 0;
}
