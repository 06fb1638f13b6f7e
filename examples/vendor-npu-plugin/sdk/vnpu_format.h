/* The model.vnpu blob, shared by the compiler and the runtime (not part of the public API).
 *
 * A header, then float32 weights in a fixed order, each matrix row-major [out][in] as in the
 * Hugging Face checkpoint: embed [V][H]; per layer: attn_norm [H], q [Hq*D][H], k [Hk*D][H],
 * v [Hk*D][H], o [H][Hq*D], mlp_norm [H], gate [I][H], up [I][H], down [H][I]; norm [H];
 * lm_head [V][H] unless tied to embed. Little-endian. */
#ifndef VNPU_FORMAT_H
#define VNPU_FORMAT_H
#include <stdint.h>

#define VNPU_MAGIC "VNPU"
#define VNPU_FORMAT 1

typedef struct vnpu_blob_header {
    char magic[4];
    uint32_t format;
    char sku[16];
    char compiler[16];
    uint32_t vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_seq;
    float eps, rope_theta;
    uint32_t tied;
    uint32_t reserved[7];
} vnpu_blob_header;

static inline uint64_t vnpu_weight_count(const vnpu_blob_header *h) {
    uint64_t H = h->hidden, D = h->head_dim, I = h->inter, V = h->vocab;
    uint64_t per_layer = H + (uint64_t)h->heads * D * H + 2ull * h->kv_heads * D * H +
                         H * (uint64_t)h->heads * D + H + 3ull * I * H;
    return V * H + h->layers * per_layer + H + (h->tied ? 0 : V * H);
}
#endif
