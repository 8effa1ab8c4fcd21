// Oracle for test/quant/gguf/fuzz.test.ts: ggml's own row quantizers (the from_float_ref of each type)
// from the same libggml-base.a that llama-quantize links, fed raw float32 rows on stdin, blocks out on
// stdout. usage: quant-harness <ggml type id> < values.f32 > blocks
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void ggml_fp32_to_fp16_row(const float * x, void * y, int64_t n);
void ggml_fp32_to_bf16_row_ref(const float * x, void * y, int64_t n);
void quantize_row_q4_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q4_1_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_1_ref(const float * x, void * y, int64_t k);
void quantize_row_q8_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q4_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q6_K_ref(const float * x, void * y, int64_t k);

typedef void (*row_fn)(const float *, void *, int64_t);
struct type { int id; int block; int bytes; row_fn fn; };
static const struct type TYPES[] = {
    { 1, 1, 2, ggml_fp32_to_fp16_row },
    { 30, 1, 2, ggml_fp32_to_bf16_row_ref },
    { 2, 32, 18, quantize_row_q4_0_ref },
    { 3, 32, 20, quantize_row_q4_1_ref },
    { 6, 32, 22, quantize_row_q5_0_ref },
    { 7, 32, 24, quantize_row_q5_1_ref },
    { 8, 32, 34, quantize_row_q8_0_ref },
    { 12, 256, 144, quantize_row_q4_K_ref },
    { 13, 256, 176, quantize_row_q5_K_ref },
    { 14, 256, 210, quantize_row_q6_K_ref },
};

int main(int argc, char ** argv) {
    if (argc != 2) return 2;
    const int id = atoi(argv[1]);
    const struct type * t = NULL;
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) if (TYPES[i].id == id) t = &TYPES[i];
    if (!t) return 4;
    size_t cap = 1 << 20, n = 0;
    float * x = malloc(cap * sizeof(float));
    size_t got;
    while ((got = fread(x + n, sizeof(float), cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) x = realloc(x, (cap *= 2) * sizeof(float));
    }
    if (n % t->block != 0) return 3;
    const size_t out = n / t->block * t->bytes;
    uint8_t * y = malloc(out ? out : 1);
    t->fn(x, y, (int64_t) n);
    fwrite(y, 1, out, stdout);
    return 0;
}
