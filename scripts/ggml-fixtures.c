// Writes ggml block fixtures for format/tests/ggml_blocks.rs: for each type, a
// deterministic f32 input, the bytes ggml_quantize_chunk() makes of it (no importance
// matrix) and what the type's to_float makes of those bytes. Built and run by
// scripts/ggml-fixtures.sh, which documents the file layout; see there.
//
// Usage: ggml-fixtures OUT_DIR [SEED]
//
// The inputs use only integer arithmetic and exactly rounded float operations (no
// libm), so the same seed gives the same inputs on every machine; they are stored in
// each fixture anyway.

#include "ggml.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QK_K 256
#ifndef N_QUANT
#define N_QUANT (16 * QK_K) // 16 super-blocks per quantised type (the 16 patterns below)
#endif
#ifndef N_FLOAT
#define N_FLOAT 1024 // plain float types
#endif
#if N_FLOAT < 64 || N_QUANT % (4 * QK_K) != 0
#error "N_FLOAT must be at least 64, N_QUANT a multiple of 1024"
#endif

// ---- deterministic PRNG (splitmix64) ------------------------------------------------

static uint64_t rng_state;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1), 24 random bits (exact).
static float uniform01(void) { return (float)(next_u64() >> 40) * (1.0f / 16777216.0f); }

// Uniform in [-1, 1).
static float uniform_pm1(void) { return uniform01() * 2.0f - 1.0f; }

// Roughly standard normal: Irwin-Hall sum of 12 uniforms minus 6 (no libm needed).
static float normal(void) {
    float s = 0.0f;
    for (int i = 0; i < 12; ++i) {
        s += uniform01();
    }
    return s - 6.0f;
}

static uint32_t below(uint32_t n) { return (uint32_t)(next_u64() % n); }

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ---- inputs for the quantised types: 16 patterns, one per super-block --------------
// (cycled if N_QUANT is raised, e.g. -DN_QUANT=65536 for a longer local check)

static void fill_quant_inputs(float * x) {
    for (int sb = 0; sb < N_QUANT / QK_K; ++sb) {
        float * y = x + sb * QK_K;
        switch (sb % 16) {
        case 0: // standard normal
            for (int i = 0; i < QK_K; ++i) y[i] = normal();
            break;
        case 1: // typical weight scale
            for (int i = 0; i < QK_K; ++i) y[i] = 0.02f * normal();
            break;
        case 2: // uniform [-1, 1)
            for (int i = 0; i < QK_K; ++i) y[i] = uniform_pm1();
            break;
        case 3: // uniform [0, 1): all non-negative (min clamps to 0 in the K-quants)
            for (int i = 0; i < QK_K; ++i) y[i] = uniform01();
            break;
        case 4: // heavy outliers: narrow normal with ~3% values 50-500x larger
            for (int i = 0; i < QK_K; ++i) {
                y[i] = 0.05f * normal();
                if (below(32) == 0) {
                    y[i] *= (50.0f + 450.0f * uniform01()) * (below(2) ? 1.0f : -1.0f);
                }
            }
            break;
        case 5: // all zeros
            for (int i = 0; i < QK_K; ++i) y[i] = 0.0f;
            break;
        case 6: // constant
            for (int i = 0; i < QK_K; ++i) y[i] = 0.7f;
            break;
        case 7: // a single nonzero value
            for (int i = 0; i < QK_K; ++i) y[i] = 0.0f;
            y[77] = -3.25f;
            break;
        case 8: // negative-dominant: mostly -|normal|, a few small positives
            for (int i = 0; i < QK_K; ++i) {
                float v = normal();
                v = v < 0 ? v : -v;
                y[i] = below(8) == 0 ? -0.1f * v : v;
            }
            break;
        case 9: // tiny values
            for (int i = 0; i < QK_K; ++i) y[i] = 1e-8f * normal();
            break;
        case 10: // large values
            for (int i = 0; i < QK_K; ++i) y[i] = 1e4f * normal();
            break;
        case 11: { // a different scale per group of 16, from 1e-4 to 1e2
            for (int g = 0; g < QK_K / 16; ++g) {
                float s = 1e-4f;
                for (uint32_t k = below(7); k > 0; --k) s *= 10.0f;
                for (int i = 0; i < 16; ++i) y[16 * g + i] = s * normal();
            }
        } break;
        case 12: { // degenerate groups in a normal block: zero, constant, single value
            for (int i = 0; i < QK_K; ++i) y[i] = normal();
            for (int i = 0; i < 32; ++i) y[32 + i] = 0.0f;      // zero group of 32
            for (int i = 0; i < 32; ++i) y[96 + i] = -1.5f;     // constant group of 32
            for (int i = 0; i < 32; ++i) y[160 + i] = 0.0f;     // group with one value
            y[171] = 2.0f;
            for (int i = 0; i < 16; ++i) y[224 + i] = 1e-20f;   // below GROUP_MAX_EPS
        } break;
        case 13: // sparse: ~85% zeros
            for (int i = 0; i < QK_K; ++i) y[i] = below(7) == 0 ? normal() : 0.0f;
            break;
        case 14: // quarter steps: many exact rounding ties
            for (int i = 0; i < QK_K; ++i) y[i] = (float)((int)below(33) - 16) * 0.25f;
            break;
        case 15: { // positive-dominant with a wide dynamic range (signed log-uniform)
            for (int i = 0; i < QK_K; ++i) {
                float m = 1.0f + uniform01();
                for (uint32_t k = below(24); k > 0; --k) m *= 0.5f;
                y[i] = below(5) == 0 ? -m : m;
            }
        } break;
        }
    }
}

// ---- inputs for the float types: rounding edge cases -------------------------------

static void fill_float_inputs(float * x) {
    int n = 0;
    static const uint32_t specials[] = {
        0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, // +-0, +-inf
        0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x47800000u, // 65504 .. overflow to inf
        0x33800000u, 0x33000000u, 0x33000001u, 0x33C00000u, // 2^-24, ties at 2^-25, 3*2^-25
        0x38800000u, 0x387FC000u, 0x387FE000u, 0x00000001u, // f16 min normal, subnormals
        0x3F801000u, 0x3F803000u, 0x3F800001u, 0x3F808000u, // f16 / bf16 ties around 1.0
        0x3F818000u, 0x7F7FFFFFu, 0x7F7F8000u, 0x00800000u, // bf16 ties, f32 max, min normal
    };
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i) {
        x[n++] = from_bits(specials[i]);
    }
    while (n < N_FLOAT / 4) x[n++] = normal();
    while (n < N_FLOAT / 2) x[n++] = 1e3f * uniform_pm1();
    // Random finite bit patterns over exponents 2^-30 .. 2^20 (f16 subnormals to
    // overflow), half of them forced onto an exact f16 or bf16 rounding tie.
    while (n < N_FLOAT) {
        uint32_t sign = below(2) << 31;
        uint32_t exp = 97 + below(51);
        uint32_t man = (uint32_t)(next_u64() >> 41);
        switch (below(4)) {
        case 0: man = (man & ~0x1FFFu) | 0x1000u; break; // f16 normal tie
        case 1: man = (man & ~0xFFFFu) | 0x8000u; break; // bf16 tie
        default: break;
        }
        x[n++] = from_bits(sign | (exp << 23) | man);
    }
}

// ---- fixture file -------------------------------------------------------------------

static void put_u32(FILE * f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fwrite(b, 1, 4, f);
}

static void put_u64(FILE * f, uint64_t v) {
    put_u32(f, (uint32_t)v);
    put_u32(f, (uint32_t)(v >> 32));
}

static void put_f32s(FILE * f, const float * x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        put_u32(f, u);
    }
}

static int write_fixture(const char * dir, enum ggml_type type, uint64_t seed) {
    const int is_float = type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
    const int64_t n = is_float ? N_FLOAT : N_QUANT;
    const int64_t nrows = 4; // several rows; n / nrows stays a multiple of 256
    const int64_t n_per_row = n / nrows;

    float * x = malloc(n * sizeof(float));
    float * y = malloc(n * sizeof(float));
    const size_t nbytes = ggml_row_size(type, n);
    void * q = malloc(nbytes);
    if (!x || !y || !q) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    rng_state = seed;
    if (is_float) fill_float_inputs(x); else fill_quant_inputs(x);

    const size_t written = ggml_quantize_chunk(type, x, q, 0, nrows, n_per_row, NULL);
    if (written != nbytes) {
        fprintf(stderr, "%s: ggml_quantize_chunk wrote %zu bytes, expected %zu\n",
                ggml_type_name(type), written, nbytes);
        return 1;
    }
    const struct ggml_type_traits * tt = ggml_get_type_traits(type);
    if (tt->to_float) {
        tt->to_float(q, y, n);
    } else if (type == GGML_TYPE_F32) {
        memcpy(y, q, n * sizeof(float));
    } else {
        fprintf(stderr, "%s: no to_float\n", ggml_type_name(type));
        return 1;
    }

    char name[64];
    snprintf(name, sizeof name, "%s", ggml_type_name(type));
    for (char * c = name; *c; ++c) {
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a'); // q4_K -> q4_k
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fwrite("GGMLFIX1", 1, 8, f);
    put_u32(f, (uint32_t)type);
    put_u32(f, (uint32_t)n);
    put_u64(f, seed);
    put_f32s(f, x, n);
    put_u32(f, (uint32_t)nbytes);
    fwrite(q, 1, nbytes, f);
    put_f32s(f, y, n);
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    printf("%-8s id %2d  %5" PRId64 " values  %5zu bytes  %s\n", name, (int)type, n, nbytes,
           path);

    free(x);
    free(y);
    free(q);
    return 0;
}

int main(int argc, char ** argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s OUT_DIR [SEED]\n", argv[0]);
        return 2;
    }
    const uint64_t seed = argc == 3 ? strtoull(argv[2], NULL, 0) : 0x6C6C6D7274ull; // "llmrt"

    static const enum ggml_type types[] = {
        GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0,   GGML_TYPE_Q4_1,
        GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K,   GGML_TYPE_Q3_K,
        GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i) {
        if (write_fixture(argv[1], types[i], seed)) return 1;
    }
    return 0;
}
