/* vnpuc: the VN-series NPU compiler, SDK 1.2 (a fictional vendor's closed binary).
 *
 *   vnpuc --model HF_DIR --output model.vnpu [--sku VN-1] [--max-seq N] [--opt-level 0..2]
 *   vnpuc --version
 *
 * Reads a Hugging Face Llama folder (config.json, model.safetensors with F32/F16/BF16 weights)
 * and writes the blob libvnpu.so loads. Exit 0 on success, 2 for a model it cannot compile
 * (the reason on stderr), 1 for an I/O failure. */
#include "vnpu_format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VNPUC_VERSION "1.2.0"

static void die(int code, const char *what, const char *detail) {
    fprintf(stderr, "vnpuc: error: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(code);
}

static char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) die(1, path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) die(1, path, "cannot read");
    buf[n] = '\0';
    fclose(f);
    if (size) *size = (size_t)n;
    return buf;
}

/* A small reader for the flat keys of config.json: the value after "key": (NULL if absent). */
static const char *json_value(const char *json, const char *key) {
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *p = strstr(json, quoted);
    if (!p) return NULL;
    p += strlen(quoted);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static double json_number(const char *json, const char *key, double fallback, int required) {
    const char *v = json_value(json, key);
    if (!v || strncmp(v, "null", 4) == 0) {
        if (required) die(2, "config.json lacks", key);
        return fallback;
    }
    return strtod(v, NULL);
}

static int json_is(const char *json, const char *key, const char *literal) {
    const char *v = json_value(json, key);
    return v && strncmp(v, literal, strlen(literal)) == 0;
}

typedef struct tensors {
    const char *header;
    const unsigned char *data;
    size_t data_size;
} tensors;

static float bf16_to_f32(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_to_f32(uint16_t v) {
    uint32_t sign = (v >> 15) & 1, exp = (v >> 10) & 31, mant = v & 1023;
    float f;
    if (exp == 0) f = ldexpf((float)mant, -24);
    else if (exp == 31) f = mant ? NAN : INFINITY;
    else f = ldexpf((float)(mant | 1024), (int)exp - 25);
    return sign ? -f : f;
}

/* Append tensor NAME (expected count floats) to out; returns out advanced. */
static float *take(const tensors *t, const char *name, uint64_t count, float *out) {
    char quoted[256];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    const char *p = strstr(t->header, quoted);
    if (!p) die(2, "model.safetensors lacks the tensor", name);
    const char *open = strchr(p, '{'), *close = open ? strchr(open, '}') : NULL;
    if (!close) die(2, "unreadable safetensors entry", name);
    char entry[512];
    snprintf(entry, sizeof entry, "%.*s", (int)(close - open + 1), open);
    const char *dtype = json_value(entry, "dtype");
    const char *offsets = json_value(entry, "data_offsets");
    if (!dtype || !offsets) die(2, "unreadable safetensors entry", name);
    unsigned long long begin = 0, end = 0;
    if (sscanf(offsets, "[%llu,%llu]", &begin, &end) != 2 &&
        sscanf(offsets, "[ %llu , %llu ]", &begin, &end) != 2)
        die(2, "unreadable data_offsets of", name);
    int width = strncmp(dtype, "\"F32\"", 5) == 0 ? 4
                : (strncmp(dtype, "\"BF16\"", 6) == 0 || strncmp(dtype, "\"F16\"", 5) == 0) ? 2
                : 0;
    if (!width) die(2, "unsupported dtype (F32, F16, BF16 are) of", name);
    if (end > t->data_size || end < begin || (end - begin) != count * (uint64_t)width) {
        fprintf(stderr, "vnpuc: error: %s holds %llu bytes, the config implies %llu\n", name,
                end - begin, (unsigned long long)(count * width));
        exit(2);
    }
    const unsigned char *src = t->data + begin;
    for (uint64_t i = 0; i < count; i++) {
        if (width == 4) memcpy(&out[i], src + 4 * i, 4);
        else {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            out[i] = strncmp(dtype, "\"BF16\"", 6) == 0 ? bf16_to_f32(v) : f16_to_f32(v);
        }
    }
    return out + count;
}

int main(int argc, char **argv) {
    const char *model = NULL, *output = NULL, *sku = "VN-1";
    long max_seq = 0, opt = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("vnpuc " VNPUC_VERSION " (blob format %d)\n", VNPU_FORMAT);
            return 0;
        }
        if (i + 1 >= argc) die(2, "missing value for", argv[i]);
        if (strcmp(argv[i], "--model") == 0) model = argv[++i];
        else if (strcmp(argv[i], "--output") == 0) output = argv[++i];
        else if (strcmp(argv[i], "--sku") == 0) sku = argv[++i];
        else if (strcmp(argv[i], "--max-seq") == 0) max_seq = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--opt-level") == 0) opt = strtol(argv[++i], NULL, 10);
        else die(2, "unknown option", argv[i]);
    }
    if (!model || !output) die(2, "usage", "vnpuc --model HF_DIR --output FILE [--sku S]");
    if (strlen(sku) >= 16) die(2, "SKU name too long", sku);
    if (opt < 0 || opt > 2) die(2, "--opt-level must be 0, 1 or 2", NULL);

    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model);
    char *config = slurp(path, NULL);
    if (!json_is(config, "model_type", "\"llama\"")) {
        const char *v = json_value(config, "model_type");
        char got[64] = "none";
        if (v) sscanf(v, "\"%63[^\"]\"", got);
        fprintf(stderr, "vnpuc: error: model_type '%s' is not supported (supported: llama)\n",
                got);
        return 2;
    }
    vnpu_blob_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, VNPU_MAGIC, 4);
    h.format = VNPU_FORMAT;
    snprintf(h.sku, sizeof h.sku, "%s", sku);
    snprintf(h.compiler, sizeof h.compiler, "vnpuc %s", VNPUC_VERSION);
    h.vocab = (uint32_t)json_number(config, "vocab_size", 0, 1);
    h.hidden = (uint32_t)json_number(config, "hidden_size", 0, 1);
    h.inter = (uint32_t)json_number(config, "intermediate_size", 0, 1);
    h.layers = (uint32_t)json_number(config, "num_hidden_layers", 0, 1);
    h.heads = (uint32_t)json_number(config, "num_attention_heads", 0, 1);
    h.kv_heads = (uint32_t)json_number(config, "num_key_value_heads", h.heads, 0);
    h.head_dim = (uint32_t)json_number(config, "head_dim", h.hidden / h.heads, 0);
    h.eps = (float)json_number(config, "rms_norm_eps", 1e-6, 0);
    h.rope_theta = (float)json_number(config, "rope_theta", 10000.0, 0);
    h.tied = json_is(config, "tie_word_embeddings", "true");
    uint32_t declared = (uint32_t)json_number(config, "max_position_embeddings", 2048, 0);
    h.max_seq = max_seq > 0 ? (uint32_t)max_seq : declared;
    const char *scaling = json_value(config, "rope_scaling");
    if (scaling && strncmp(scaling, "null", 4) != 0) {
        double factor = json_number(scaling, "factor", 1.0, 0);
        if (factor != 1.0) {
            fprintf(stderr, "vnpuc: error: rope_scaling with factor %g is not supported "
                            "(plain RoPE only)\n", factor);
            return 2;
        }
    }
    if (json_is(config, "attention_bias", "true") || json_is(config, "mlp_bias", "true"))
        die(2, "biases in attention or MLP are not supported", NULL);
    if (h.heads == 0 || h.kv_heads == 0 || h.heads % h.kv_heads || h.head_dim % 2)
        die(2, "unsupported head layout in config.json", NULL);
    free(config);

    snprintf(path, sizeof path, "%s/model.safetensors", model);
    size_t size = 0;
    char *file = slurp(path, &size);
    uint64_t header_len = 0;
    if (size < 8) die(2, path, "not a safetensors file");
    memcpy(&header_len, file, 8);
    if (8 + header_len > size) die(2, path, "not a safetensors file");
    char *header = malloc(header_len + 1);
    memcpy(header, file + 8, header_len);
    header[header_len] = '\0';
    tensors t = {header, (unsigned char *)file + 8 + header_len, size - 8 - header_len};

    uint64_t n = vnpu_weight_count(&h);
    float *weights = malloc(n * sizeof(float)), *p = weights;
    if (!weights) die(1, "out of memory", NULL);
    uint64_t H = h.hidden, D = h.head_dim, I = h.inter, V = h.vocab;
    char name[160];
    p = take(&t, "model.embed_tokens.weight", V * H, p);
    for (uint32_t l = 0; l < h.layers; l++) {
        printf("vnpuc: lowering layer %u/%u to the %s tile array (-O%ld)\n", l + 1, h.layers,
               h.sku, opt);
#define LAYER(suffix, count)                                                  \
    snprintf(name, sizeof name, "model.layers.%u.%s", l, suffix);             \
    p = take(&t, name, count, p);
        LAYER("input_layernorm.weight", H)
        LAYER("self_attn.q_proj.weight", (uint64_t)h.heads * D * H)
        LAYER("self_attn.k_proj.weight", (uint64_t)h.kv_heads * D * H)
        LAYER("self_attn.v_proj.weight", (uint64_t)h.kv_heads * D * H)
        LAYER("self_attn.o_proj.weight", H * h.heads * D)
        LAYER("post_attention_layernorm.weight", H)
        LAYER("mlp.gate_proj.weight", I * H)
        LAYER("mlp.up_proj.weight", I * H)
        LAYER("mlp.down_proj.weight", H * I)
#undef LAYER
    }
    p = take(&t, "model.norm.weight", H, p);
    if (!h.tied) p = take(&t, "lm_head.weight", V * H, p);

    FILE *out = fopen(output, "wb");
    if (!out) die(1, output, strerror(errno));
    if (fwrite(&h, sizeof h, 1, out) != 1 || fwrite(weights, sizeof(float), n, out) != n ||
        fclose(out) != 0)
        die(1, output, "write failed");
    printf("vnpuc: wrote %s (%s, %llu weights, max_seq %u)\n", output, h.sku,
           (unsigned long long)n, h.max_seq);
    free(weights);
    free(header);
    free(file);
    return 0;
}
