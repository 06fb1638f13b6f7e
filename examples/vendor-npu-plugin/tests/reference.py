"""The reference the VN runtime must reproduce: the tiny Llama's forward pass in NumPy.

Written from the model's definition (Hugging Face's Llama: RMSNorm, rotary embeddings with the
rotate-half pairing, grouped-query attention, SwiGLU MLP, tied embeddings), in float64, reading
the checkpoint's safetensors directly. Greedy decoding over it gives the tokens the C runtime
(libvnpu.so, a separate implementation in C) must give for the same prompt.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16}


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of ``model.safetensors`` as float64 (F32, F16 and BF16 files)."""
    data = (folder / "model.safetensors").read_bytes()
    (size,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    weights = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = body[begin:end]
        if entry["dtype"] == "BF16":
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, _DTYPES[entry["dtype"]])
        weights[name] = array.reshape(entry["shape"]).astype(np.float64)
    return weights


class Reference:
    """The model, one token at a time, with its KV cache."""

    def __init__(self, folder: Path) -> None:
        self.config = json.loads((folder / "config.json").read_text())
        self.w = load_weights(folder)
        c = self.config
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta", 10000.0)
        half = np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim
        self.inv_freq = 1.0 / theta**half
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.reset()

    def reset(self) -> None:
        layers = self.config["num_hidden_layers"]
        self.keys: list[list[np.ndarray]] = [[] for _ in range(layers)]
        self.values: list[list[np.ndarray]] = [[] for _ in range(layers)]

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x) + self.eps) * weight

    def _rope(self, x: np.ndarray, pos: int) -> np.ndarray:
        half = self.head_dim // 2
        cos, sin = np.cos(pos * self.inv_freq), np.sin(pos * self.inv_freq)
        a, b = x[:, :half], x[:, half:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=1)

    def step(self, token: int) -> np.ndarray:
        """Feed one token; the logits of the next."""
        w, d = self.w, self.head_dim
        pos = len(self.keys[0])
        x = w["model.embed_tokens.weight"][token]
        group = self.heads // self.kv_heads
        for i in range(self.config["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self._norm(x, w[p + "input_layernorm.weight"])
            q = self._rope((w[p + "self_attn.q_proj.weight"] @ h).reshape(self.heads, d), pos)
            k = self._rope((w[p + "self_attn.k_proj.weight"] @ h).reshape(self.kv_heads, d), pos)
            v = (w[p + "self_attn.v_proj.weight"] @ h).reshape(self.kv_heads, d)
            self.keys[i].append(k)
            self.values[i].append(v)
            keys, values = np.stack(self.keys[i]), np.stack(self.values[i])  # [t, kv, d]
            out = np.empty((self.heads, d))
            for head in range(self.heads):
                scores = keys[:, head // group] @ q[head] / np.sqrt(d)
                p_att = np.exp(scores - scores.max())
                out[head] = (p_att / p_att.sum()) @ values[:, head // group]
            x = x + w[p + "self_attn.o_proj.weight"] @ out.reshape(-1)
            h = self._norm(x, w[p + "post_attention_layernorm.weight"])
            gate = w[p + "mlp.gate_proj.weight"] @ h
            up = w[p + "mlp.up_proj.weight"] @ h
            x = x + w[p + "mlp.down_proj.weight"] @ (gate / (1 + np.exp(-gate)) * up)
        return self.lm_head @ self._norm(x, w["model.norm.weight"])

    def greedy(
        self, prompt_ids: list[int], max_tokens: int, eos: set[int] = frozenset()
    ) -> list[int]:
        """Greedy ids after ``prompt_ids``, stopping before an id of ``eos``."""
        self.reset()
        for token in prompt_ids:
            logits = self.step(token)
        out: list[int] = []
        for _ in range(max_tokens):
            token = int(np.argmax(logits))
            if token in eos:
                break
            out.append(token)
            logits = self.step(token)
        return out
