//! ONNX graph file names and their input/output names.

/// File name of block `b`'s graph of the incremental code module.
pub fn block_file_name(b: usize) -> String {
    format!("{CODE_HEAD_BLOCK_PREFIX}{b:04}.onnx")
}

/// Full sequence: `visits` f32 [batch, visits, V] -> `history` f32 [batch, visits, E].
pub const VISIT_TRANSFORMER: &str = "visit_transformer.onnx";
/// One visit with a key/value cache: `visit` f32 [batch, V] and the cache of the positions before ->
/// `history` f32 [batch, E] and the cache with the visit's position added; the visit's position is the
/// cache's length `past_len`. From format version 7 ([`SPLIT_CACHE_FORMAT`]) the cache is one tensor per
/// layer and role, so that a step copies each once (the single tensor was gathered, split and concatenated
/// again, 15% of the sampler's time in memmove): layer i's keys `past_key.{i}` f32 [batch, n_head,
/// head_dim, past_len] (kept transposed, as attention reads them) and values `past_value.{i}` f32 [batch,
/// n_head, past_len, head_dim] -> `present_key.{i}` and `present_value.{i}` (past_len + 1). Before: `past`
/// f32 [n_layer, 2, batch, n_head, past_len, head_dim] -> `present`.
pub const VISIT_TRANSFORMER_STEP: &str = "visit_transformer_step.onnx";
/// The first format version whose step graph takes its cache one tensor per layer and role.
pub const SPLIT_CACHE_FORMAT: u32 = 7;
/// The first format version whose step graph takes the visit's embedding, `embedded` f32 [batch, E], in
/// place of `visit` (and `seen`) [batch, V]: the sampler sums the rows of [`VISIT_EMBEDDINGS`] of the
/// codes set (a visit holds tens of the V codes), where the graph multiplied [batch, V] multi-hot
/// matrices by [V, E] weights, 46% of a step's arithmetic on the demo model.
pub const EMBEDDED_STEP_FORMAT: u32 = 8;
/// Names of layer `i`'s cache inputs and outputs in the step graph of [`SPLIT_CACHE_FORMAT`] on.
pub fn past_key(i: usize) -> String {
    format!("past_key.{i}")
}
pub fn past_value(i: usize) -> String {
    format!("past_value.{i}")
}
pub fn present_key(i: usize) -> String {
    format!("present_key.{i}")
}
pub fn present_value(i: usize) -> String {
    format!("present_value.{i}")
}
/// Code-level module: `history` f32 [batch, E] (history vector of the previous position) and `visit`
/// f32 [batch, V] (the visit's codes set so far) -> `logits` f32 [batch, V]; the logit of code j depends
/// only on the history and on visit codes < j.
pub const CODE_HEAD: &str = "code_head.onnx";
/// The code-level module split for incremental sampling (format version 2), first part: `history` f32
/// [batch, E] -> `pre` f32 [batch, H], the pre-activations of auto1's H = E + V - 1 used hidden units
/// for an empty visit. Setting visit code `k` then adds column `E + k` of the masked auto1 weight
/// (the manifest's `columns` file) to `pre`.
pub const CODE_HEAD_START: &str = "code_head_start.onnx";
/// Second part, one graph per block of codes (file names from [`block_file_name`]): block b holds codes
/// b L .. min((b + 1) L, V) for the manifest's `block_len` L; `pre` f32 [batch, K_b], the first
/// K_b = E + end_b - 1 pre-activations (the logit of code j reads hidden units up to E - 1 + j) ->
/// `logits` f32 [batch, end_b - b L]. Each block's weights are constants of its graph, so a runtime can
/// keep them pre-packed.
pub const CODE_HEAD_BLOCK_PREFIX: &str = "code_head_block_";
/// The visit columns of the masked auto1 weight, for `pre` updates outside the graphs: for each code
/// k in 0..V, rows E + k .. H of column E + k (the rows the mask keeps), as little-endian f32,
/// concatenated (V (V - 1) / 2 values; code k starts at k (V - 1) - k (k - 1) / 2). In fp16 exports the
/// values are the fp16-rounded weights, as the graphs use them.
pub const CODE_HEAD_COLUMNS: &str = "code_head_columns.f32";
/// The code-level module as arrays for the sampler's own kernel (format version 5; replaces the
/// incremental files): see [`super::NativeCodeModule`] for the layout.
pub const CODE_MODULE: &str = "code_module.f32";
/// The label bias of a model with `ModelConfig::label_bias` (format version 9): for each label code d in
/// label-local order, its bias to every vocabulary entry's logit, V little-endian f32 (as trained). The
/// sampler adds the rows of a record's labels to the logits of its visits.
pub const LABEL_BIAS: &str = "label_bias.f32";
/// The first format version with [`LABEL_BIAS`] (written only for models with a label bias; others are
/// written as version 8).
pub const LABEL_BIAS_FORMAT: u32 = 9;
/// The step graph's input embeddings (format version 8, [`EMBEDDED_STEP_FORMAT`]) as little-endian f32:
/// V rows of E values, row c being code c's column of `transformer.vis_embed_mat.weight`, then, for a
/// model with `ModelConfig::seen_codes`, V rows of `transformer.seen_embed_mat.weight` (fp16-rounded in
/// fp16 exports, as the graphs store them). A step's `embedded` input is, row by row, the sum of the
/// visit's codes' rows in ascending code order plus the seen-code embedding: the running sum of the rows
/// of the record's codes as each first appears, visit by visit and in ascending order within a visit
/// (started afresh with each window), which the sampler keeps from step to step.
pub const VISIT_EMBEDDINGS: &str = "visit_embeddings.f32";

pub const IN_VISITS: &str = "visits";
pub const IN_VISIT: &str = "visit";
pub const IN_PAST: &str = "past";
/// Step graph of a model with `ModelConfig::seen_codes`: the union of the record's visits up to and
/// including `visit`, [batch, V].
pub const IN_SEEN: &str = "seen";
/// Step graph from format version 8: the visit's embedding (see [`VISIT_EMBEDDINGS`]), [batch, E].
pub const IN_EMBEDDED: &str = "embedded";
pub const IN_HISTORY: &str = "history";
pub const IN_PRE: &str = "pre";
pub const OUT_PRE: &str = "pre";
pub const OUT_HISTORY: &str = "history";
pub const OUT_PRESENT: &str = "present";
pub const OUT_LOGITS: &str = "logits";
