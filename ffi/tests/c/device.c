/* device.c: where a context runs, through the C ABI.
 *
 *   device MODEL PROMPT
 *
 * Checks that llmrt_device_available is LLMRT_OK for the CPU and AUTO and
 * LLMRT_ERR_INVALID_ARG for an unknown value; that a context with an unknown device
 * is LLMRT_ERR_INVALID_ARG and one on CUDA with two sequences LLMRT_ERR_UNSUPPORTED
 * (both leave *out NULL and a message); that an AUTO context generates, greedily
 * over an f32 cache, what a CPU context generates. Prints, for the Rust test to read:
 *
 *   cuda: available                    or  cuda: STATUS: MESSAGE
 *   cuda context: ok                   or  cuda context: STATUS: MESSAGE
 *   auto: cpu                          or  auto: cuda
 *   ok
 */
#include "check.h"

static llmrt_context_params params(uint32_t device) {
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = 1;
    cp.cache_type = LLMRT_CACHE_F32;
    cp.sampler.temperature = 0.0f;
    cp.device = device;
    return cp;
}

/* llmrt_generate's text for the prompt on a fresh context of `device`. */
static text_buf generated(const llmrt_model *m, uint32_t device, const char *prompt,
                          uint32_t *chosen) {
    llmrt_context_params cp = params(device);
    llmrt_context *c = NULL;
    OK(llmrt_context_new(m, &cp, &c));
    OK(llmrt_context_device(c, chosen));
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = 24;
    gp.ignore_eos = 1;
    text_buf t = {0};
    llmrt_generation g;
    OK(llmrt_generate(c, prompt, strlen(prompt), &gp, collect_piece, &t, &g));
    CHECK(g.n_generated == 24, "n_generated %u", g.n_generated);
    OK(llmrt_context_free(c));
    if (t.data == NULL) text_push(&t, "", 0);
    return t;
}

int main(int argc, char **argv) {
    CHECK(argc == 3, "usage: device MODEL PROMPT");
    const char *prompt = argv[2];
    llmrt_model *m = NULL;
    OK(llmrt_model_load(argv[1], &m));

    OK(llmrt_device_available(LLMRT_DEVICE_CPU));
    OK(llmrt_device_available(LLMRT_DEVICE_AUTO));
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_device_available(3));

    llmrt_status st = llmrt_device_available(LLMRT_DEVICE_CUDA);
    if (st == LLMRT_OK) printf("cuda: available\n");
    else printf("cuda: %s: %s\n", llmrt_status_name(st), llmrt_last_error());

    llmrt_context_params cp = params(LLMRT_DEVICE_CUDA);
    llmrt_context *c = (llmrt_context *)1;
    st = llmrt_context_new(m, &cp, &c);
    if (st == LLMRT_OK) {
        uint32_t d = 0;
        OK(llmrt_context_device(c, &d));
        CHECK(d == LLMRT_DEVICE_CUDA, "device %u", d);
        OK(llmrt_context_free(c));
        printf("cuda context: ok\n");
    } else {
        CHECK(c == NULL, "a failed llmrt_context_new leaves *out NULL");
        printf("cuda context: %s: %s\n", llmrt_status_name(st), llmrt_last_error());
    }

    /* Refused whatever the machine has. */
    c = (llmrt_context *)1;
    cp = params(7);
    FAILS(LLMRT_ERR_INVALID_ARG, llmrt_context_new(m, &cp, &c));
    CHECK(c == NULL, "out");
    cp = params(LLMRT_DEVICE_CUDA);
    cp.n_seq = 2;
    FAILS(LLMRT_ERR_UNSUPPORTED, llmrt_context_new(m, &cp, &c));
    CHECK(c == NULL, "out");
    FAILS(LLMRT_ERR_NULL, llmrt_context_device(NULL, NULL));

    uint32_t on_auto = 0, on_cpu = 0;
    text_buf a = generated(m, LLMRT_DEVICE_AUTO, prompt, &on_auto);
    text_buf b = generated(m, LLMRT_DEVICE_CPU, prompt, &on_cpu);
    CHECK(on_cpu == LLMRT_DEVICE_CPU, "a CPU context runs on %u", on_cpu);
    CHECK(on_auto == LLMRT_DEVICE_CPU || on_auto == LLMRT_DEVICE_CUDA, "auto: %u", on_auto);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "AUTO gave \"%s\", CPU \"%s\"",
          a.data, b.data);
    printf("auto: %s\n", on_auto == LLMRT_DEVICE_CUDA ? "cuda" : "cpu");
    text_free(&a);
    text_free(&b);
    OK(llmrt_model_free(m));
    printf("ok\n");
    return 0;
}
