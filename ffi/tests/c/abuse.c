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

#include <stdint.h>
#include <sys/resource.h>

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    CHECK(fwrite(data, 1, len, f) == len, "write");
    fclose(f);
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
    OK(llmrt_context_new(m, &cp, &c));
    FAILS(LLMRT_ERR_BAD_HANDLE, llmrt_model_free((llmrt_model *)c));

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
