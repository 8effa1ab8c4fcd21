// Oracle for test/gguf/kquant-fuzz.test.ts: ggml's own reference K-quant functions from the same
// libggml-base.a that llama-quantize links, fed raw float32 rows on stdin, blocks out on stdout.
// usage: kquant-harness <ggml type id 12|13|14> < values.f32 > blocks
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void quantize_row_q4_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q6_K_ref(const float * x, void * y, int64_t k);

int main(int argc, char ** argv) {
    if (argc != 2) return 2;
    const int type = atoi(argv[1]);
    size_t cap = 1 << 20, n = 0;
    float * x = malloc(cap * sizeof(float));
    size_t got;
    while ((got = fread(x + n, sizeof(float), cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) x = realloc(x, (cap *= 2) * sizeof(float));
    }
    if (n % 256 != 0) return 3;
    const size_t bytes = type == 12 ? 144 : type == 13 ? 176 : type == 14 ? 210 : 0;
    if (!bytes) return 4;
    uint8_t * y = malloc(n / 256 * bytes);
    if (type == 12) quantize_row_q4_K_ref(x, y, (int64_t) n);
    if (type == 13) quantize_row_q5_K_ref(x, y, (int64_t) n);
    if (type == 14) quantize_row_q6_K_ref(x, y, (int64_t) n);
    fwrite(y, 1, n / 256 * bytes, stdout);
    return 0;
}
