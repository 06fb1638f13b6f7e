/*
 * vnpu.h - the C API of the VN-series NPU runtime (libvnpu.so), SDK 1.2.
 *
 * A fictional binary-only NPU for rmbuild's plugin example: the vendor ships libvnpu.so, this
 * header and the compiler vnpuc; nothing else. The runtime loads a compiled model blob
 * (model.vnpu, written by vnpuc) onto a device and runs a causal LM one step at a time, the KV
 * cache held on the device inside a context.
 *
 * Status codes: every function that can fail returns a vnpu_status; VNPU_OK is 0. After a
 * failure, vnpu_last_error() describes it (a thread-local string owned by the library, valid
 * until the next call on the same thread).
 *
 * Ownership: vnpu_model_load gives the caller a model, freed with vnpu_model_free;
 * vnpu_context_create gives a context, freed with vnpu_context_free, which must happen before
 * its model is freed. Strings returned by the library are static or library-owned: never free
 * them. Buffers passed in (tokens, logits) are the caller's and are not kept.
 *
 * Devices: the runtime simulates its devices on the host CPU; VNPU_DEVICES (comma-separated
 * SKUs, default "VN-1") says which are present. A blob compiled for another SKU is refused with
 * VNPU_ERR_DEVICE.
 */
#ifndef VNPU_H
#define VNPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VNPU_ABI_VERSION 1

typedef enum vnpu_status {
    VNPU_OK = 0,
    VNPU_ERR_ARGUMENT = 1, /* a NULL pointer, a buffer too small, a token out of range */
    VNPU_ERR_IO = 2,       /* the blob cannot be read */
    VNPU_ERR_FORMAT = 3,   /* not a vnpu blob, or a format this runtime does not know */
    VNPU_ERR_DEVICE = 4,   /* no such device, or none of the blob's SKU */
    VNPU_ERR_CAPACITY = 5, /* the step would pass the compiled sequence length */
    VNPU_ERR_MEMORY = 6    /* out of (device) memory */
} vnpu_status;

typedef struct vnpu_model vnpu_model;     /* a compiled model loaded on a device */
typedef struct vnpu_context vnpu_context; /* one sequence: its KV cache and position */

typedef struct vnpu_model_info {
    uint32_t vocab_size;
    uint32_t hidden_size;
    uint32_t num_layers;
    uint32_t num_heads;
    uint32_t num_kv_heads;
    uint32_t head_dim;
    uint32_t max_seq; /* the compiled context length: the KV cache's capacity */
    char sku[16];     /* the SKU the blob was compiled for, NUL-terminated */
} vnpu_model_info;

int vnpu_abi_version(void);
const char *vnpu_version(void);
const char *vnpu_status_name(vnpu_status status);
const char *vnpu_last_error(void);

int vnpu_device_count(void);
vnpu_status vnpu_device_sku(int device, char *buf, size_t size);

vnpu_status vnpu_model_load(const char *path, int device, vnpu_model **out);
void vnpu_model_free(vnpu_model *model);
vnpu_status vnpu_model_get_info(const vnpu_model *model, vnpu_model_info *out);

vnpu_status vnpu_context_create(vnpu_model *model, vnpu_context **out);
void vnpu_context_free(vnpu_context *ctx);
vnpu_status vnpu_context_reset(vnpu_context *ctx);
uint32_t vnpu_context_length(const vnpu_context *ctx);
/* Feed count tokens after the cached ones; logits (logits_size >= vocab_size floats) receive
 * the last position's logits. */
vnpu_status vnpu_context_step(vnpu_context *ctx, const int64_t *tokens, size_t count,
                              float *logits, size_t logits_size);

#ifdef __cplusplus
}
#endif
#endif /* VNPU_H */
