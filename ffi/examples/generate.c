/*
 * generate.c: a tiny llama-cli over libllmrt. Loads a model, streams a completion
 * to stdout, then a newline -- byte for byte what `llm-run` prints for the same
 * model, prompt, seed and sampler flags.
 *
 *   generate MODEL PROMPT [N] [SEED] [TEMP]
 *   generate -m MODEL -p PROMPT [-n N] [-s SEED] [--temperature T] [--top-k K]
 *            [--top-p P] [--min-p P] [--repeat-penalty R] [--repeat-last-n N]
 *            [--frequency-penalty F] [--presence-penalty P] [-t THREADS]
 *            [-c CTX] [--stop TEXT]... [--ignore-eos] [--no-bos]
 *            [--device auto|cpu|cuda]
 *
 * --device (default auto, as llm-run's) picks where the model runs: auto takes a CUDA
 * GPU when one can run the model and the CPU otherwise; cuda fails in one line when
 * no GPU can be used (llmrt_device_available says why).
 *
 * Build: cc -Wall -Wextra -Werror generate.c -I../include -L../../target/release -lllmrt
 */
#include "llmrt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOPS 16

static int usage(const char *why) {
    fprintf(stderr, "generate: %s\n", why);
    fprintf(stderr,
            "usage: generate MODEL PROMPT [N] [SEED] [TEMP]\n"
            "       generate -m MODEL -p PROMPT [-n N] [-s SEED] [--temperature T] [--top-k K]\n"
            "                [--top-p P] [--min-p P] [--repeat-penalty R] [--repeat-last-n N]\n"
            "                [--frequency-penalty F] [--presence-penalty P] [-t THREADS]\n"
            "                [-c CTX] [--stop TEXT]... [--ignore-eos] [--no-bos]\n"
            "                [--device auto|cpu|cuda]\n");
    return 2;
}

/* Parses a whole unsigned number; 0 on garbage. */
static int parse_u64(const char *s, unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    if (s == NULL || *s == '\0' || *s == '-') return 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && end != NULL && *end == '\0';
}

static int parse_u32(const char *s, uint32_t *out) {
    unsigned long long v;
    if (!parse_u64(s, &v) || v > 0xffffffffULL) return 0;
    *out = (uint32_t)v;
    return 1;
}

static int parse_f32(const char *s, float *out) {
    char *end = NULL;
    errno = 0;
    if (s == NULL || *s == '\0') return 0;
    *out = strtof(s, &end);
    return errno == 0 && end != NULL && *end == '\0';
}

/* Streams each piece to stdout as it comes; a failed write stops generation. */
static int32_t print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    if (fwrite(piece, 1, len, stdout) != len || fflush(stdout) != 0) return 1;
    return 0;
}

/* Parses --device. */
static int parse_device(const char *s, uint32_t *out) {
    if (s == NULL) return 0;
    if (!strcmp(s, "auto")) *out = LLMRT_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *out = LLMRT_DEVICE_CPU;
    else if (!strcmp(s, "cuda")) *out = LLMRT_DEVICE_CUDA;
    else return 0;
    return 1;
}

static int fail(const char *what, llmrt_status st) {
    fprintf(stderr, "error: %s: %s (%s)\n", what, llmrt_last_error(), llmrt_status_name(st));
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL;
    const char *stops[MAX_STOPS];
    size_t n_stop = 0;
    int have_seed = 0, no_bos = 0, ignore_eos = 0, positional = 0;
    unsigned long long seed = 0;
    uint32_t n_predict = 128;
    llmrt_context_params cp = llmrt_context_default_params();
    cp.device = LLMRT_DEVICE_AUTO;

    if (llmrt_version_number() / 100 != LLMRT_VERSION_NUMBER / 100) {
        fprintf(stderr, "generate: built for libllmrt %d.%d, loaded %s\n", LLMRT_VERSION_MAJOR,
                LLMRT_VERSION_MINOR, llmrt_version());
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, takes = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = parse_u32(v, &n_predict);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) ok = have_seed = parse_u64(v, &seed);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = parse_u32(v, &cp.n_threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = parse_u32(v, &cp.n_ctx);
        else if (!strcmp(a, "--temperature")) ok = parse_f32(v, &cp.sampler.temperature);
        else if (!strcmp(a, "--top-k")) ok = parse_u32(v, &cp.sampler.top_k);
        else if (!strcmp(a, "--top-p")) ok = parse_f32(v, &cp.sampler.top_p);
        else if (!strcmp(a, "--min-p")) ok = parse_f32(v, &cp.sampler.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = parse_f32(v, &cp.sampler.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) ok = parse_u32(v, &cp.sampler.repeat_last_n);
        else if (!strcmp(a, "--frequency-penalty")) ok = parse_f32(v, &cp.sampler.frequency_penalty);
        else if (!strcmp(a, "--presence-penalty")) ok = parse_f32(v, &cp.sampler.presence_penalty);
        else if (!strcmp(a, "--device")) {
            if (!parse_device(v, &cp.device)) return usage("--device takes auto, cpu or cuda");
        } else if (!strcmp(a, "--stop")) {
            if (n_stop == MAX_STOPS) return usage("too many --stop strings");
            ok = v != NULL;
            stops[n_stop++] = v;
        } else if (!strcmp(a, "--ignore-eos")) { ignore_eos = 1; takes = 0; }
        else if (!strcmp(a, "--no-bos")) { no_bos = 1; takes = 0; }
        else if (a[0] == '-' && a[1] != '\0') return usage("unknown flag");
        else {
            /* Positional form: MODEL PROMPT [N] [SEED] [TEMP]. */
            takes = 0;
            switch (positional++) {
            case 0: model_path = a; break;
            case 1: prompt = a; break;
            case 2: ok = parse_u32(a, &n_predict); break;
            case 3: ok = have_seed = parse_u64(a, &seed); break;
            case 4: ok = parse_f32(a, &cp.sampler.temperature); break;
            default: return usage("too many arguments");
            }
        }
        if (!ok || (takes && v == NULL)) return usage("a flag's value is missing or not a number");
        i += takes;
    }
    if (model_path == NULL) return usage("no model given");
    if (prompt == NULL) return usage("no prompt given");
    if (!have_seed) {
        seed = (unsigned long long)time(NULL);
        fprintf(stderr, "generate: seed %llu\n", seed);
    }
    cp.sampler.seed = seed;

    llmrt_status st;
    if (cp.device == LLMRT_DEVICE_CUDA && (st = llmrt_device_available(LLMRT_DEVICE_CUDA)) != LLMRT_OK)
        return fail("--device cuda", st);

    llmrt_model *model = NULL;
    llmrt_context *ctx = NULL;
    st = llmrt_model_load(model_path, &model);
    if (st != LLMRT_OK) return fail(model_path, st);
    st = llmrt_context_new(model, &cp, &ctx);
    if (st != LLMRT_OK) {
        llmrt_model_free(model);
        return fail("context", st);
    }
    uint32_t device = LLMRT_DEVICE_CPU;
    if (llmrt_context_device(ctx, &device) == LLMRT_OK)
        fprintf(stderr, "generate: running on the %s\n", device == LLMRT_DEVICE_CUDA ? "GPU" : "CPU");
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = n_predict;
    gp.add_bos = no_bos ? 0 : LLMRT_BOS_DEFAULT;
    gp.ignore_eos = ignore_eos;
    gp.stop = stops;
    gp.n_stop = n_stop;
    llmrt_generation g;
    st = llmrt_generate(ctx, prompt, strlen(prompt), &gp, print_piece, NULL, &g);
    int rc = 0;
    if (st != LLMRT_OK) rc = fail("generate", st);
    else {
        printf("\n");
        fprintf(stderr, "generate: %u prompt tokens, %u generated, stop reason %d\n", g.n_prompt,
                g.n_generated, g.stop_reason);
    }
    llmrt_context_free(ctx);
    llmrt_model_free(model);
    return rc;
}
