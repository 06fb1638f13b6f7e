/* libvnpu.so: the VN-series NPU runtime (simulated on the host CPU). See vnpu.h. */
#include "vnpu.h"
#include "vnpu_format.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VNPU_RUNTIME_VERSION "1.2.0"

static _Thread_local char last_error[512];

static vnpu_status fail(vnpu_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return status;
}

int vnpu_abi_version(void) { return VNPU_ABI_VERSION; }
const char *vnpu_version(void) { return VNPU_RUNTIME_VERSION; }
const char *vnpu_last_error(void) { return last_error; }

const char *vnpu_status_name(vnpu_status status) {
    switch (status) {
    case VNPU_OK: return "VNPU_OK";
    case VNPU_ERR_ARGUMENT: return "VNPU_ERR_ARGUMENT";
    case VNPU_ERR_IO: return "VNPU_ERR_IO";
    case VNPU_ERR_FORMAT: return "VNPU_ERR_FORMAT";
    case VNPU_ERR_DEVICE: return "VNPU_ERR_DEVICE";
    case VNPU_ERR_CAPACITY: return "VNPU_ERR_CAPACITY";
    case VNPU_ERR_MEMORY: return "VNPU_ERR_MEMORY";
    }
    return "VNPU_ERR_UNKNOWN";
}

/* ---- simulated devices: $VNPU_DEVICES, comma-separated SKUs (default VN-1) ---- */

static int device_sku(int index, char *buf, size_t size) {
    const char *env = getenv("VNPU_DEVICES");
    const char *list = env ? env : "VN-1";
    int i = 0;
    while (*list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len > 0) {
            if (i == index) {
                if (buf) snprintf(buf, size, "%.*s", (int)len, list);
                return 1;
            }
            i++;
        }
        if (!end) break;
        list = end + 1;
    }
    return 0;
}

int vnpu_device_count(void) {
    int n = 0;
    while (device_sku(n, NULL, 0)) n++;
    return n;
}

vnpu_status vnpu_device_sku(int device, char *buf, size_t size) {
    if (!buf || size == 0) return fail(VNPU_ERR_ARGUMENT, "no buffer for the SKU");
    if (device < 0 || !device_sku(device, buf, size))
        return fail(VNPU_ERR_DEVICE, "no device %d (%d present)", device, vnpu_device_count());
    return VNPU_OK;
}

/* ---- the model ---- */

typedef struct layer {
    const float *attn_norm, *q, *k, *v, *o, *mlp_norm, *gate, *up, *down;
} layer;

struct vnpu_model {
    vnpu_blob_header h;
    float *weights;
    const float *embed, *norm, *lm_head;
    layer *layers;
    float *inv_freq; /* [head_dim / 2] */
};

struct vnpu_context {
    vnpu_model *m;
    uint32_t length;
    float *k_cache, *v_cache; /* [layers][max_seq][kv_heads * head_dim] */
    double *x, *h, *q, *k, *v, *att, *out, *g, *u, *scores;
};

void vnpu_model_free(vnpu_model *m) {
    if (!m) return;
    free(m->weights);
    free(m->layers);
    free(m->inv_freq);
    free(m);
}

vnpu_status vnpu_model_load(const char *path, int device, vnpu_model **out) {
    if (!path || !out) return fail(VNPU_ERR_ARGUMENT, "path and out must not be NULL");
    *out = NULL;
    char sku[16];
    if (device < 0 || !device_sku(device, sku, sizeof sku))
        return fail(VNPU_ERR_DEVICE, "no device %d (%d present)", device, vnpu_device_count());
    FILE *f = fopen(path, "rb");
    if (!f) return fail(VNPU_ERR_IO, "cannot open %s", path);
    vnpu_model *m = calloc(1, sizeof *m);
    if (!m) { fclose(f); return fail(VNPU_ERR_MEMORY, "out of memory"); }
    vnpu_status st = VNPU_OK;
    if (fread(&m->h, sizeof m->h, 1, f) != 1 || memcmp(m->h.magic, VNPU_MAGIC, 4) != 0) {
        st = fail(VNPU_ERR_FORMAT, "%s is not a vnpu model blob", path);
        goto done;
    }
    if (m->h.format != VNPU_FORMAT) {
        st = fail(VNPU_ERR_FORMAT, "%s has blob format %u; this runtime reads format %d",
                  path, m->h.format, VNPU_FORMAT);
        goto done;
    }
    m->h.sku[sizeof m->h.sku - 1] = '\0';
    if (strcmp(m->h.sku, sku) != 0) {
        st = fail(VNPU_ERR_DEVICE, "the blob was compiled for %s; device %d is a %s",
                  m->h.sku, device, sku);
        goto done;
    }
    if (m->h.head_dim % 2 || m->h.heads % m->h.kv_heads || m->h.max_seq == 0) {
        st = fail(VNPU_ERR_FORMAT, "inconsistent dimensions in %s", path);
        goto done;
    }
    uint64_t n = vnpu_weight_count(&m->h);
    m->weights = malloc(n * sizeof(float));
    m->layers = calloc(m->h.layers, sizeof(layer));
    m->inv_freq = malloc(m->h.head_dim / 2 * sizeof(float));
    if (!m->weights || !m->layers || !m->inv_freq) {
        st = fail(VNPU_ERR_MEMORY, "out of memory for %llu weights", (unsigned long long)n);
        goto done;
    }
    if (fread(m->weights, sizeof(float), n, f) != n) {
        st = fail(VNPU_ERR_FORMAT, "%s is truncated (expected %llu weights)", path,
                  (unsigned long long)n);
        goto done;
    }
    uint64_t H = m->h.hidden, D = m->h.head_dim, I = m->h.inter, V = m->h.vocab;
    const float *p = m->weights;
    m->embed = p; p += V * H;
    for (uint32_t l = 0; l < m->h.layers; l++) {
        layer *L = &m->layers[l];
        L->attn_norm = p; p += H;
        L->q = p; p += m->h.heads * D * H;
        L->k = p; p += m->h.kv_heads * D * H;
        L->v = p; p += m->h.kv_heads * D * H;
        L->o = p; p += H * m->h.heads * D;
        L->mlp_norm = p; p += H;
        L->gate = p; p += I * H;
        L->up = p; p += I * H;
        L->down = p; p += H * I;
    }
    m->norm = p; p += H;
    m->lm_head = m->h.tied ? m->embed : p;
    for (uint32_t i = 0; i < D / 2; i++)
        m->inv_freq[i] = (float)(1.0 / pow((double)m->h.rope_theta, (double)(2 * i) / (double)D));
done:
    fclose(f);
    if (st != VNPU_OK) { vnpu_model_free(m); return st; }
    *out = m;
    return VNPU_OK;
}

vnpu_status vnpu_model_get_info(const vnpu_model *m, vnpu_model_info *out) {
    if (!m || !out) return fail(VNPU_ERR_ARGUMENT, "model and out must not be NULL");
    memset(out, 0, sizeof *out);
    out->vocab_size = m->h.vocab;
    out->hidden_size = m->h.hidden;
    out->num_layers = m->h.layers;
    out->num_heads = m->h.heads;
    out->num_kv_heads = m->h.kv_heads;
    out->head_dim = m->h.head_dim;
    out->max_seq = m->h.max_seq;
    memcpy(out->sku, m->h.sku, sizeof out->sku);
    return VNPU_OK;
}

/* ---- contexts and the forward pass ---- */

void vnpu_context_free(vnpu_context *c) {
    if (!c) return;
    free(c->k_cache); free(c->v_cache);
    free(c->x); free(c->h); free(c->q); free(c->k); free(c->v); free(c->att); free(c->out);
    free(c->g); free(c->u); free(c->scores);
    free(c);
}

vnpu_status vnpu_context_create(vnpu_model *m, vnpu_context **out) {
    if (!m || !out) return fail(VNPU_ERR_ARGUMENT, "model and out must not be NULL");
    *out = NULL;
    vnpu_context *c = calloc(1, sizeof *c);
    if (!c) return fail(VNPU_ERR_MEMORY, "out of memory");
    c->m = m;
    size_t kv = (size_t)m->h.layers * m->h.max_seq * m->h.kv_heads * m->h.head_dim;
    size_t qd = (size_t)m->h.heads * m->h.head_dim, kd = (size_t)m->h.kv_heads * m->h.head_dim;
    c->k_cache = calloc(kv, sizeof(float));
    c->v_cache = calloc(kv, sizeof(float));
    c->x = calloc(m->h.hidden, sizeof(double));
    c->h = calloc(m->h.hidden, sizeof(double));
    c->q = calloc(qd, sizeof(double));
    c->k = calloc(kd, sizeof(double));
    c->v = calloc(kd, sizeof(double));
    c->att = calloc(qd, sizeof(double));
    c->out = calloc(m->h.hidden, sizeof(double));
    c->g = calloc(m->h.inter, sizeof(double));
    c->u = calloc(m->h.inter, sizeof(double));
    c->scores = calloc(m->h.max_seq, sizeof(double));
    if (!c->k_cache || !c->v_cache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att ||
        !c->out || !c->g || !c->u || !c->scores) {
        vnpu_context_free(c);
        return fail(VNPU_ERR_MEMORY, "out of memory for the KV cache");
    }
    *out = c;
    return VNPU_OK;
}

vnpu_status vnpu_context_reset(vnpu_context *c) {
    if (!c) return fail(VNPU_ERR_ARGUMENT, "context must not be NULL");
    c->length = 0;
    return VNPU_OK;
}

uint32_t vnpu_context_length(const vnpu_context *c) { return c ? c->length : 0; }

static void rmsnorm(double *dst, const double *x, const float *w, uint32_t n, float eps) {
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + (double)eps);
    for (uint32_t i = 0; i < n; i++) dst[i] = x[i] * scale * (double)w[i];
}

static void matvec(double *dst, const float *w, const double *x, uint32_t rows, uint32_t cols) {
    for (uint32_t r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        double acc = 0;
        for (uint32_t i = 0; i < cols; i++) acc += (double)row[i] * x[i];
        dst[r] = acc;
    }
}

/* Rotary embedding, rotate-half pairing (i, i + D/2), as the checkpoint's attention expects. */
static void rope(double *vec, uint32_t heads, uint32_t D, const float *inv_freq, uint32_t pos) {
    for (uint32_t h = 0; h < heads; h++) {
        double *x = vec + (size_t)h * D;
        for (uint32_t i = 0; i < D / 2; i++) {
            double angle = (double)pos * (double)inv_freq[i];
            double cs = cos(angle), sn = sin(angle);
            double a = x[i], b = x[i + D / 2];
            x[i] = a * cs - b * sn;
            x[i + D / 2] = b * cs + a * sn;
        }
    }
}

static void forward(vnpu_context *c, int64_t token, float *logits) {
    vnpu_model *m = c->m;
    const vnpu_blob_header *h = &m->h;
    uint32_t H = h->hidden, D = h->head_dim, I = h->inter, pos = c->length;
    uint32_t kd = h->kv_heads * D, group = h->heads / h->kv_heads;
    for (uint32_t i = 0; i < H; i++) c->x[i] = m->embed[(size_t)token * H + i];
    for (uint32_t l = 0; l < h->layers; l++) {
        const layer *L = &m->layers[l];
        rmsnorm(c->h, c->x, L->attn_norm, H, h->eps);
        matvec(c->q, L->q, c->h, h->heads * D, H);
        matvec(c->k, L->k, c->h, kd, H);
        matvec(c->v, L->v, c->h, kd, H);
        rope(c->q, h->heads, D, m->inv_freq, pos);
        rope(c->k, h->kv_heads, D, m->inv_freq, pos);
        float *kc = c->k_cache + ((size_t)l * h->max_seq) * kd;
        float *vc = c->v_cache + ((size_t)l * h->max_seq) * kd;
        for (uint32_t i = 0; i < kd; i++) {
            kc[(size_t)pos * kd + i] = (float)c->k[i];
            vc[(size_t)pos * kd + i] = (float)c->v[i];
        }
        double scale = 1.0 / sqrt((double)D);
        for (uint32_t hd = 0; hd < h->heads; hd++) {
            const double *q = c->q + (size_t)hd * D;
            uint32_t kvh = hd / group;
            double top = -INFINITY;
            for (uint32_t t = 0; t <= pos; t++) {
                const float *k = kc + (size_t)t * kd + (size_t)kvh * D;
                double s = 0;
                for (uint32_t i = 0; i < D; i++) s += q[i] * (double)k[i];
                c->scores[t] = s * scale;
                if (c->scores[t] > top) top = c->scores[t];
            }
            double sum = 0;
            for (uint32_t t = 0; t <= pos; t++) sum += (c->scores[t] = exp(c->scores[t] - top));
            double *o = c->att + (size_t)hd * D;
            for (uint32_t i = 0; i < D; i++) o[i] = 0;
            for (uint32_t t = 0; t <= pos; t++) {
                const float *v = vc + (size_t)t * kd + (size_t)kvh * D;
                double p = c->scores[t] / sum;
                for (uint32_t i = 0; i < D; i++) o[i] += p * (double)v[i];
            }
        }
        matvec(c->out, L->o, c->att, H, h->heads * D);
        for (uint32_t i = 0; i < H; i++) c->x[i] += c->out[i];
        rmsnorm(c->h, c->x, L->mlp_norm, H, h->eps);
        matvec(c->g, L->gate, c->h, I, H);
        matvec(c->u, L->up, c->h, I, H);
        for (uint32_t i = 0; i < I; i++) c->g[i] = c->g[i] / (1.0 + exp(-c->g[i])) * c->u[i];
        matvec(c->out, L->down, c->g, H, I);
        for (uint32_t i = 0; i < H; i++) c->x[i] += c->out[i];
    }
    c->length++;
    if (!logits) return;
    rmsnorm(c->h, c->x, m->norm, H, h->eps);
    for (uint32_t r = 0; r < h->vocab; r++) {
        const float *row = m->lm_head + (size_t)r * H;
        double acc = 0;
        for (uint32_t i = 0; i < H; i++) acc += (double)row[i] * c->h[i];
        logits[r] = (float)acc;
    }
}

vnpu_status vnpu_context_step(vnpu_context *c, const int64_t *tokens, size_t count,
                              float *logits, size_t logits_size) {
    if (!c || !tokens || !logits || count == 0)
        return fail(VNPU_ERR_ARGUMENT, "context, tokens and logits must be given, count > 0");
    const vnpu_blob_header *h = &c->m->h;
    if (logits_size < h->vocab)
        return fail(VNPU_ERR_ARGUMENT, "logits holds %zu floats; the vocabulary is %u",
                    logits_size, h->vocab);
    if (c->length + count > h->max_seq)
        return fail(VNPU_ERR_CAPACITY, "%u cached + %zu new tokens exceed the compiled length %u",
                    c->length, count, h->max_seq);
    for (size_t i = 0; i < count; i++)
        if (tokens[i] < 0 || tokens[i] >= (int64_t)h->vocab)
            return fail(VNPU_ERR_ARGUMENT, "token %lld is outside the vocabulary (%u)",
                        (long long)tokens[i], h->vocab);
    for (size_t i = 0; i < count; i++) forward(c, tokens[i], i + 1 == count ? logits : NULL);
    return VNPU_OK;
}
