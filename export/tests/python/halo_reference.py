"""Independent numpy implementation of HALO's forward pass, and a check of an exported model directory
against it with ONNX Runtime and the ONNX checker.

Usage: halo_reference.py CHECKPOINT_DIR MODEL_DIR [--tol-logits X] [--tol-probs X] [--tol-history X]

Reads the checkpoint's weights.safetensors by hand (8-byte little-endian header length, JSON header,
raw little-endian data), computes the reference in float64 and compares:
  - visit_transformer.onnx against the reference history (batch 1 and 7, 1, 5 and n_ctx visits);
  - visit_transformer_step.onnx run visit by visit (from an empty cache) against the full graph;
  - code_head.onnx logits and sigmoid probabilities against the reference code module;
  - the masking property: changing visit code j changes no logit of index <= j.
Prints one line per check and exits 1 on the first failure.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def visit_transformer(w, cfg, visits):
    """visits [B, T, V] -> history [B, T, E]."""
    B, T, _ = visits.shape
    E, H = cfg["n_embd"], cfg["n_head"]
    hd = E // H
    eps = cfg["layer_norm_epsilon"]
    x = visits @ w["transformer.vis_embed_mat.weight"].T + w["transformer.pos_embed_mat.weight"][:T]
    if cfg.get("seen_codes"):
        # The codes seen so far: the union of visits 0..t at each t.
        x = x + np.maximum.accumulate(visits, axis=1) @ w["transformer.seen_embed_mat.weight"].T
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}"
        h = layer_norm(x, w[f"{p}.ln_1.weight"], w[f"{p}.ln_1.bias"], eps)
        qkv = h @ w[f"{p}.attn.c_attn.weight"] + w[f"{p}.attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        q, k, v = (t.reshape(B, T, H, hd).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        scores = np.where(causal, scores, -1e10)
        a = softmax(scores) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, T, E)
        x = x + a @ w[f"{p}.attn.c_proj.weight"] + w[f"{p}.attn.c_proj.bias"]
        h = layer_norm(x, w[f"{p}.ln_2.weight"], w[f"{p}.ln_2.bias"], eps)
        m = gelu_tanh(h @ w[f"{p}.mlp.c_fc.weight"] + w[f"{p}.mlp.c_fc.bias"])
        x = x + m @ w[f"{p}.mlp.c_proj.weight"] + w[f"{p}.mlp.c_proj.bias"]
    return layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)


def code_head(w, cfg, history, visit):
    """history [B, E] (previous position), visit [B, V] -> logits [B, V]."""
    E, V = cfg["n_embd"], cfg["total_vocab_size"]
    if cfg.get("coarse", False):
        return history @ w["ehr_head.weight"].T + w["ehr_head.bias"]
    D = E + V
    mask = np.tril(np.ones((D, D)))
    inp = np.concatenate([history, visit], axis=1)
    h1 = np.maximum(inp @ (w["ehr_head.auto1.weight"] * mask).T + w["ehr_head.auto1.bias"], 0.0)
    out = h1 @ (w["ehr_head.auto2.weight"] * mask).T + w["ehr_head.auto2.bias"]
    return out[:, E - 1 : E - 1 + V]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Checker:
    def __init__(self):
        self.failed = False

    def close(self, what, got, want, tol):
        err = float(np.max(np.abs(np.asarray(got, np.float64) - want))) if np.size(want) else 0.0
        ok = err <= tol and np.all(np.isfinite(got))
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max abs error {err:.3g} (tolerance {tol:g})")
        if not ok:
            self.failed = True

    def true(self, what, ok):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failed = True


def random_visits(rng, B, T, V):
    return (rng.random((B, T, V)) < 0.3).astype(np.float32)


def main(argv):
    args = argv[1:]
    tol = {"--tol-logits": 1e-4, "--tol-probs": 1e-5, "--tol-history": 1e-4}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in tol:
            tol[args[i]] = float(args[i + 1])
            i += 2
        else:
            pos.append(args[i])
            i += 1
    ckpt_dir, model_dir = pos
    cfg = json.load(open(os.path.join(ckpt_dir, "config.json")))
    w = read_safetensors(os.path.join(ckpt_dir, "weights.safetensors"))
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    E, V, L, H = cfg["n_embd"], cfg["total_vocab_size"], cfg["n_layer"], cfg["n_head"]
    hd = E // H
    check = Checker()

    files = manifest["files"]
    paths = {k: os.path.join(model_dir, files[k]["name"]) for k in ("visit_transformer", "visit_transformer_step", "code_head")}
    for key, path in paths.items():
        onnx.checker.check_model(path, full_check=True)
        m = onnx.load(path, load_external_data=False)
        check.true(
            f"{key}: onnx.checker full_check passes; ir_version {m.ir_version}, opset {m.opset_import[0].version}",
            m.ir_version == manifest["ir_version"] and m.opset_import[0].version == manifest["opset"],
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = {k: ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}

    # Format 8: the step takes the visit's embedding, summed from visit_embeddings.f32 (each code's rows).
    embedded_step = "visit_embeddings" in files
    if embedded_step:
        tables = np.fromfile(os.path.join(model_dir, files["visit_embeddings"]["name"]), "<f4").reshape(-1, V, E)
        check.true(
            f"visit_embeddings.f32 holds {tables.shape[0]} tables of V x E (seen codes: {bool(cfg.get('seen_codes'))})",
            tables.shape[0] == (2 if cfg.get("seen_codes") else 1),
        )
        check.close(
            "visit_embeddings.f32: the visit embedding's columns",
            tables[0].astype(np.float64),
            w["transformer.vis_embed_mat.weight"].T.astype(np.float64),
            1e-3 if manifest.get("precision") == "fp16" else 0.0,  # fp16 exports store rounded weights
        )

    rng = np.random.default_rng(7)
    for B in (1, 7):
        for T in (1, 5, cfg["n_ctx"]):
            visits = random_visits(rng, B, T, V)
            want = visit_transformer(w, cfg, visits.astype(np.float64))
            (got,) = sess["visit_transformer"].run(["history"], {"visits": visits})
            check.close(f"visit_transformer history, batch {B}, {T} visits", got, want, tol["--tol-history"])

            # The cache, one tensor per layer and role: keys transposed [B, H, hd, len], values [B, H, len, hd].
            roles = [(i, role) for i in range(L) for role in ("key", "value")]
            shape = lambda role, n: (B, H, hd, n) if role == "key" else (B, H, n, hd)
            past = {f"past_{role}.{i}": np.zeros(shape(role, 0), np.float32) for i, role in roles}
            steps = []
            seen = np.zeros((B, V), np.float32)
            for t in range(T):
                if cfg.get("seen_codes"):
                    seen = np.maximum(seen, visits[:, t])
                if embedded_step:
                    embedded = visits[:, t] @ tables[0]
                    if cfg.get("seen_codes"):
                        embedded = embedded + seen @ tables[1]
                    inputs = {"embedded": embedded.astype(np.float32), **past}
                else:
                    inputs = {"visit": visits[:, t], **past}
                    if cfg.get("seen_codes"):
                        inputs["seen"] = seen
                names = [f"present_{role}.{i}" for i, role in roles]
                hist, *present = sess["visit_transformer_step"].run(["history"] + names, inputs)
                for (i, role), p in zip(roles, present):
                    if p.shape != shape(role, t + 1):
                        check.true(f"step present_{role}.{i} shape {p.shape} at step {t}", False)
                steps.append(hist)
                past = {f"past_{role}.{i}": p for (i, role), p in zip(roles, present)}
            check.close(f"step graph visit by visit == full graph, batch {B}, {T} visits", np.stack(steps, 1), got, 1e-5)

            # Code head on every position: history of t-1 and visit t (t >= 1), as in training.
            if T >= 2:
                hist_prev = got[:, :-1].reshape(-1, E)
                vis_next = visits[:, 1:].reshape(-1, V)
                want_logits = code_head(w, cfg, hist_prev.astype(np.float64), vis_next.astype(np.float64))
                (logits,) = sess["code_head"].run(["logits"], {"history": hist_prev, "visit": vis_next})
                check.close(f"code_head logits, {hist_prev.shape[0]} rows", logits, want_logits, tol["--tol-logits"])
                check.close(
                    f"code_head probabilities, {hist_prev.shape[0]} rows",
                    sigmoid(logits.astype(np.float64)),
                    sigmoid(want_logits),
                    tol["--tol-probs"],
                )

    # Masking: setting or clearing visit code j leaves logits 0..j unchanged, and (fine model) some flip
    # changes a later logit; the coarse head ignores the visit altogether.
    hist = rng.standard_normal((16, E)).astype(np.float32)
    visit = random_visits(rng, 16, 1, V)[:, 0]
    (base,) = sess["code_head"].run(["logits"], {"history": hist, "visit": visit})
    coarse = cfg.get("coarse", False)
    later_changed = False
    for j in sorted({0, 1, V // 2, V - 2, V - 1}):
        flipped = visit.copy()
        flipped[:, j] = 1.0 - flipped[:, j]
        (out,) = sess["code_head"].run(["logits"], {"history": hist, "visit": flipped})
        check.true(f"flipping visit code {j} changes no logit <= {j}", np.array_equal(out[:, : j + 1], base[:, : j + 1]))
        later_changed |= bool(np.any(out[:, j + 1 :] != base[:, j + 1 :]))
        if coarse:
            check.true(f"coarse head ignores visit code {j}", np.array_equal(out, base))
    if not coarse:
        check.true("some flip changes a later logit", later_changed)

    if check.failed:
        print("reference check FAILED")
        return 1
    print("reference check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
