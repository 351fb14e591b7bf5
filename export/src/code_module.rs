//! `code_module.f32` (model directory format 5): the masked code-level module as the arrays the sampler's
//! own kernel reads, in the layout of [`NativeCodeModule`]. The masks are applied by leaving the masked
//! weights out.

use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::NativeCodeModule;

/// The file's bytes (little-endian f32; in an fp16 export the weight matrices are fp16-rounded and the
/// biases kept, as the graphs store them).
pub fn bytes(ck: &Checkpoint, precision: Precision) -> Vec<u8> {
    let c = &ck.config;
    let layout = NativeCodeModule::of(c);
    let (e, v, d, hidden) = (c.n_embd, c.total_vocab_size, c.head_width(), layout.hidden());
    let w1 = &ck.tensor("ehr_head.auto1.weight").data;
    let b1 = &ck.tensor("ehr_head.auto1.bias").data;
    let w2 = &ck.tensor("ehr_head.auto2.weight").data;
    let b2 = &ck.tensor("ehr_head.auto2.bias").data;
    let first_logit = c.first_logit_row();
    let stored = |w: f32| match precision {
        Precision::Fp32 => w,
        Precision::Fp16 => half::f16::from_f32(w).to_f32(),
    };
    let mut values: Vec<f32> = Vec::with_capacity(layout.values());
    values.extend_from_slice(&b1[..hidden]);
    // auto1 (weight [out, in], output r reads inputs <= r): the history inputs in panels of units, then
    // each visit input's column, rows i..H.
    for k in 0..layout.history_panels() {
        let units = k * NativeCodeModule::BLOCK..(k + 1) * NativeCodeModule::BLOCK;
        for i in 0..e {
            values.extend(units.clone().map(|row| {
                if row < hidden && i <= row {
                    stored(w1[row * d + i])
                } else {
                    0.0
                }
            }));
        }
    }
    for i in e..hidden {
        values.extend((i..hidden).map(|row| stored(w1[row * d + i])));
    }
    // auto2: per panel, hidden unit h to the logits (output rows E - 1 + j) of the panel's codes, zero
    // where the mask cuts.
    for b in 0..layout.blocks() {
        let codes = layout.block_codes(b);
        for h in 0..layout.block_units(b) {
            values.extend((codes.start..codes.start + NativeCodeModule::BLOCK).map(|j| {
                if j < v && h < e + j {
                    stored(w2[(first_logit + j) * d + h])
                } else {
                    0.0
                }
            }));
        }
    }
    values.extend_from_slice(&b2[first_logit..first_logit + v]);
    debug_assert_eq!(values.len(), layout.values());
    debug_assert_eq!(e + v - 1, hidden);
    let mut out = Vec::with_capacity(values.len() * 4);
    for w in values {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}
