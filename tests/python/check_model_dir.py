"""A model directory as a client we did not write sees it: the onnx package's full checker and the Python
onnxruntime package. Checks every graph, the manifest's sha256 values, the declared inputs and outputs, and
that the key/value-cache graph run step by step gives the full-sequence graph's history.

Usage: python check_model_dir.py MODEL_DIR   (prints one line per check; exits non-zero on failure)
"""

import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_dir = sys.argv[1]
manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
cfg = manifest["model"]
V, E, L, H = cfg["total_vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
HD = E // H

files = manifest["files"]
incremental = files.get("code_head_incremental")
graphs = [files["visit_transformer"], files["visit_transformer_step"], files["code_head"]]
if incremental:
    graphs += [incremental["start"]] + incremental["blocks"]
    columns = incremental["columns"]
    digest = hashlib.sha256(open(os.path.join(model_dir, columns["name"]), "rb").read()).hexdigest()
    assert digest == columns["sha256"], f"{columns['name']}: sha256 {digest} != manifest {columns['sha256']}"
for entry in graphs:
    path = os.path.join(model_dir, entry["name"])
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert digest == entry["sha256"], f"{entry['name']}: sha256 {digest} != manifest {entry['sha256']}"
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert model.ir_version <= 13, model.ir_version
    assert all(o.version <= 26 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    print(f"{entry['name']}: sha256 matches, onnx.checker full_check passed, IR {model.ir_version}")

options = ort.SessionOptions()
options.intra_op_num_threads = 1
load = lambda name: ort.InferenceSession(os.path.join(model_dir, name), options, providers=["CPUExecutionProvider"])
full, step, head = load("visit_transformer.onnx"), load("visit_transformer_step.onnx"), load("code_head.onnx")
names = lambda s: ([i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()])
assert names(full) == (["visits"], ["history"]), names(full)
# A model that embeds the codes seen so far (manifest model.seen_codes) takes their union as `seen`.
seen_codes = bool(cfg.get("seen_codes", False))
# The cache: one tensor per layer and role (keys transposed) from format version 7, one tensor before.
split_cache = manifest["format_version"] >= 7
if split_cache:
    cache_in = [f"past_{role}.{i}" for i in range(L) for role in ("key", "value")]
    cache_out = [f"present_{role}.{i}" for i in range(L) for role in ("key", "value")]
else:
    cache_in, cache_out = ["past"], ["present"]
# From format version 8 the step takes the visit's embedding, summed from visit_embeddings.f32 (V rows of E
# values per table: the visit embedding, then the seen-code embedding).
embedded_step = manifest["format_version"] >= 8
if embedded_step:
    tables = np.fromfile(os.path.join(model_dir, manifest["files"]["visit_embeddings"]["name"]), dtype="<f4")
    tables = tables.reshape(2 if seen_codes else 1, V, E)
    step_inputs = ["embedded"] + cache_in
else:
    step_inputs = ["visit"] + cache_in + (["seen"] if seen_codes else [])
assert names(step) == (step_inputs, ["history"] + cache_out), names(step)
assert names(head) == (["history", "visit"], ["logits"]), names(head)

rng = np.random.default_rng(0)
B, T = 3, min(5, cfg["n_ctx"])
visits = (rng.random((B, T, V)) < 0.1).astype(np.float32)
history_full = full.run(None, {"visits": visits})[0]
assert history_full.shape == (B, T, E), history_full.shape
if split_cache:
    past = [np.zeros((B, H, HD, 0) if name.startswith("past_key") else (B, H, 0, HD), np.float32) for name in cache_in]
else:
    past = [np.zeros((L, 2, B, H, 0, HD), np.float32)]
worst = 0.0
seen = np.zeros((B, V), np.float32)
for t in range(T):
    seen = np.maximum(seen, visits[:, t])
    inputs = dict(zip(cache_in, past))
    if embedded_step:
        embedded = visits[:, t] @ tables[0] + (seen @ tables[1] if seen_codes else 0)
        inputs["embedded"] = embedded.astype(np.float32)
    else:
        inputs["visit"] = visits[:, t]
        if seen_codes:
            inputs["seen"] = seen
    history, *past = step.run(None, inputs)
    worst = max(worst, float(np.abs(history - history_full[:, t]).max()))
assert worst < 1e-4, f"step-by-step history differs from the full graph by {worst}"
print(f"step graph, {T} steps, batch {B}: max |history - full| = {worst:.2e}")

logits = head.run(None, {"history": history_full[:, -1], "visit": visits[:, -1]})[0]
assert logits.shape == (B, V) and np.isfinite(logits).all()
# The logit of code j must not depend on visit codes >= j: flip the last code and compare the others.
flipped = visits[:, -1].copy()
flipped[:, V - 1] = 1 - flipped[:, V - 1]
logits2 = head.run(None, {"history": history_full[:, -1], "visit": flipped})[0]
assert np.array_equal(logits[:, : V - 1], logits2[:, : V - 1]) or np.abs(logits[:, : V - 1] - logits2[:, : V - 1]).max() < 1e-6
print(f"code head: logits {logits.shape}, finite, earlier logits unchanged by the last code")

if incremental:
    # The incremental module as the manifest describes it: pre-activations from the history, plus the auto1
    # column of every visit code set, then each block's logits from a prefix of them, equal the dense head's.
    start = load(incremental["start"]["name"])
    cols = np.fromfile(os.path.join(model_dir, incremental["columns"]["name"]), dtype="<f4")
    assert cols.size == V * (V - 1) // 2, (cols.size, V)
    hist, visit = history_full[:, -1], visits[:, -1]
    pre = start.run(None, {"history": hist})[0]
    for k in range(V):
        offset = k * (V - 1) - k * (k - 1) // 2
        column = cols[offset : offset + V - 1 - k]
        pre[:, E + k :] += visit[:, k : k + 1] * column
    block_len, worst = incremental["block_len"], 0.0
    for b, entry in enumerate(incremental["blocks"]):
        first, end = b * block_len, min((b + 1) * block_len, V)
        block = load(entry["name"]).run(None, {"pre": pre[:, : E + end - 1]})[0]
        worst = max(worst, float(np.abs(block - logits[:, first:end]).max()))
    assert worst < 1e-4, f"incremental logits differ from the dense head's by {worst}"
    print(f"incremental code module: {len(incremental['blocks'])} blocks, max |block - dense| = {worst:.2e}")
print("ok")
