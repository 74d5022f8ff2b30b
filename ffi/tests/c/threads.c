/* threads.c: several threads over one shared model.
 *
 *   threads MODEL PROMPT N_TOKENS
 *
 * 1. Four threads, started together, each generate N_TOKENS with their own context
 *    and seed; each text must equal what one thread alone generates with that seed.
 * 2. Cancellation from another thread: the callback blocks after its first piece
 *    until the main thread has called llmrt_cancel (and checked that a second thread
 *    gets LLMRT_ERR_BUSY on the busy context); generation must then stop before the
 *    next token with LLMRT_STOP_CANCELLED. A cancel made while nothing runs must not
 *    stop the next generation.
 * Prints "ok". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define N_THREADS 4

static const llmrt_model *g_model;
static const char *g_prompt;
static uint32_t g_n;
static pthread_barrier_t g_start;

static text_buf run(uint64_t seed) {
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = 1;
    cp.sampler.seed = seed;
    llmrt_context *c = NULL;
    OK(llmrt_context_new(g_model, &cp, &c));
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = g_n;
    gp.ignore_eos = 1;
    text_buf t = {0};
    text_push(&t, "", 0);
    llmrt_generation g;
    OK(llmrt_generate(c, g_prompt, strlen(g_prompt), &gp, collect_piece, &t, &g));
    CHECK(g.n_generated == g_n, "generated %u of %u", g.n_generated, g_n);
    OK(llmrt_context_free(c));
    return t;
}

typedef struct {
    uint64_t seed;
    text_buf text;
} job;

static void *worker(void *arg) {
    job *j = (job *)arg;
    pthread_barrier_wait(&g_start);
    j->text = run(j->seed);
    return NULL;
}

/* Cancellation handshake between the generating thread and main. */
static atomic_int g_first_piece, g_cancel_sent;
static int g_pieces_after;

static int32_t block_once(const char *piece, size_t len, void *user_data) {
    (void)piece;
    (void)len;
    (void)user_data;
    if (atomic_load(&g_cancel_sent)) g_pieces_after++;
    if (!atomic_exchange(&g_first_piece, 1)) {
        while (!atomic_load(&g_cancel_sent)) sched_yield();
    }
    return 0;
}

typedef struct {
    llmrt_context *ctx;
    llmrt_generation g;
    llmrt_status st;
} cancel_job;

static void *cancel_worker(void *arg) {
    cancel_job *j = (cancel_job *)arg;
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = 100000;
    gp.ignore_eos = 1;
    j->st = llmrt_generate(j->ctx, g_prompt, strlen(g_prompt), &gp, block_once, NULL, &j->g);
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 4, "usage: threads MODEL PROMPT N_TOKENS");
    g_prompt = argv[2];
    g_n = (uint32_t)strtoul(argv[3], NULL, 10);
    llmrt_model *m = NULL;
    OK(llmrt_model_load(argv[1], &m));
    g_model = m;

    /* 1. One thread, then four at once. */
    text_buf alone[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) alone[i] = run(1000 + (uint64_t)i);
    job jobs[N_THREADS];
    pthread_t th[N_THREADS];
    CHECK(pthread_barrier_init(&g_start, NULL, N_THREADS) == 0, "barrier");
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i].seed = 1000 + (uint64_t)i;
        CHECK(pthread_create(&th[i], NULL, worker, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&g_start);
    for (int i = 0; i < N_THREADS; i++) {
        CHECK(strcmp(jobs[i].text.data, alone[i].data) == 0,
              "thread %d: '%s' alone vs '%s' together", i, alone[i].data, jobs[i].text.data);
        text_free(&jobs[i].text);
    }
    int distinct = strcmp(alone[0].data, alone[1].data) != 0;
    for (int i = 0; i < N_THREADS; i++) text_free(&alone[i]);
    CHECK(distinct, "different seeds gave the same text");

    /* 2. Cancel from this thread while another generates. */
    llmrt_context_params cp = llmrt_context_default_params();
    cp.n_threads = 1;
    cancel_job cj = {NULL, {0, 0, -1}, LLMRT_ERR_INTERNAL};
    OK(llmrt_context_new(m, &cp, &cj.ctx));
    {
        /* A cancel made while nothing runs does nothing: the next call runs to its end. */
        OK(llmrt_cancel(cj.ctx));
        llmrt_generate_params gp0 = llmrt_generate_default_params();
        gp0.n_predict = 3;
        gp0.ignore_eos = 1;
        llmrt_generation g0;
        OK(llmrt_generate(cj.ctx, g_prompt, strlen(g_prompt), &gp0, NULL, NULL, &g0));
        CHECK(g0.stop_reason == LLMRT_STOP_MAX_TOKENS && g0.n_generated == 3,
              "an idle cancel stopped the next generation: %d, %u", g0.stop_reason, g0.n_generated);
        OK(llmrt_kv_reset(cj.ctx));
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancel_worker, &cj) == 0, "pthread_create");
    while (!atomic_load(&g_first_piece)) sched_yield();
    uint32_t tok = 0;
    FAILS(LLMRT_ERR_BUSY, llmrt_eval(cj.ctx, &tok, 1));
    OK(llmrt_cancel(cj.ctx));
    atomic_store(&g_cancel_sent, 1);
    pthread_join(t, NULL);
    OK(cj.st);
    CHECK(cj.g.stop_reason == LLMRT_STOP_CANCELLED, "stop reason %d", cj.g.stop_reason);
    CHECK(cj.g.n_generated >= 1 && cj.g.n_generated <= 4 && g_pieces_after == 0,
          "%u generated, %d pieces after the cancel", cj.g.n_generated, g_pieces_after);
    /* The cancel was consumed: the next generation runs to its budget. */
    llmrt_generate_params gp = llmrt_generate_default_params();
    gp.n_predict = 5;
    gp.ignore_eos = 1;
    llmrt_generation g;
    OK(llmrt_kv_reset(cj.ctx));
    OK(llmrt_generate(cj.ctx, g_prompt, strlen(g_prompt), &gp, NULL, NULL, &g));
    CHECK(g.stop_reason == LLMRT_STOP_MAX_TOKENS && g.n_generated == 5, "after cancel: %d, %u",
          g.stop_reason, g.n_generated);
    OK(llmrt_context_free(cj.ctx));
    OK(llmrt_model_free(m));
    printf("ok\n");
    return 0;
}
