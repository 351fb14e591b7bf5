//! Per-record squared norms of one layer's weight gradient from the layer's input `a` [P, S, in] and output
//! gradient `g` [P, S, out] (record p's rows 0..S; padding rows are zero in both), without a backward pass
//! per record. Record p's weight gradient is sum_s a_s ⊗ g_s, so its squared norm is either
//! - the "ghost norm" sum_{s,s'} (a_s . a_s')(g_s . g_s') (Goodfellow 2015, "Efficient per-example gradient
//!   computations"; Li et al. 2021, "Large language models can be strong differentially private learners"),
//!   costing S^2 (in + out) per record, or
//! - the gradient materialised, a^T g [in, out], costing S in out per record;
//!
//! the cheaper one is chosen per layer and batch (Bu et al. 2022, "book-keeping", choose the same way).

use tch::{Kind, Tensor};

/// Columns of a masked layer's output handled together by [`masked_weight_norm2`].
const MASK_BLOCK: i64 = 64;

/// Squared norm per record (P values) of sum_s a_s ⊗ g_s.
pub fn weight_norm2(a: &Tensor, g: &Tensor) -> Tensor {
    let (_, s, n_in) = a.size3().expect("a is [P, S, in]");
    let n_out = g.size()[2];
    if s * (n_in + n_out) <= n_in * n_out {
        ghost_norm2(a, g)
    } else {
        materialised_norm2(a, g)
    }
}

/// sum_{s,s'} (a_s . a_s')(g_s . g_s') per record.
pub fn ghost_norm2(a: &Tensor, g: &Tensor) -> Tensor {
    let gram_a = a.matmul(&a.transpose(1, 2));
    let gram_g = g.matmul(&g.transpose(1, 2));
    sum_per_record(&(gram_a * gram_g))
}

/// |a^T g|^2 per record.
pub fn materialised_norm2(a: &Tensor, g: &Tensor) -> Tensor {
    sum_per_record(&a.transpose(1, 2).matmul(g).square())
}

/// [P, x, y] -> [P], in the inputs' kind.
fn sum_per_record(x: &Tensor) -> Tensor {
    x.sum_dim_intlist([1i64, 2].as_slice(), false, x.kind())
}

/// Squared norm per record of the masked gradient: entry (o, i) (output o, input i) counts only where
/// i <= o + `offset`, the mask of HALO's autoregressive layers (`offset` is the first output row kept, 0 for
/// auto1). Ghost norm by blocks of outputs: for outputs [o0, o1) every input below o0 + offset + 1 counts,
/// so that part is the ghost formula with the Gram matrix of those input columns (accumulated as the blocks
/// advance); the triangle of inputs [o0 + offset + 1, o1 + offset) is materialised, [block, block] per
/// record. Cost S^2 (in + out) + S out block per record, instead of S in out.
pub fn masked_weight_norm2(a: &Tensor, g: &Tensor, offset: i64) -> Tensor {
    let (p, s, n_in) = a.size3().expect("a is [P, S, in]");
    let n_out = g.size()[2];
    let options = (a.kind(), a.device());
    let mut total = Tensor::zeros([p], options);
    // Gram matrix of input columns [0, gram_end).
    let mut gram_a = Tensor::zeros([p, s, s], options);
    let mut gram_end = 0i64;
    for o0 in (0..n_out).step_by(MASK_BLOCK as usize) {
        let o1 = (o0 + MASK_BLOCK).min(n_out);
        let g_block = g.narrow(2, o0, o1 - o0);
        let full_end = (o0 + offset + 1).clamp(0, n_in);
        if full_end > gram_end {
            let cols = a.narrow(2, gram_end, full_end - gram_end);
            gram_a += cols.matmul(&cols.transpose(1, 2));
            gram_end = full_end;
        }
        if gram_end > 0 {
            let gram_g = g_block.matmul(&g_block.transpose(1, 2));
            total += sum_per_record(&(&gram_a * gram_g));
        }
        let partial_end = (o1 + offset).clamp(0, n_in);
        if partial_end > full_end {
            // Input i of the triangle counts for output o when i <= o + offset.
            let width = partial_end - full_end;
            let cols = a.narrow(2, full_end, width);
            let inputs = Tensor::arange_start(full_end, partial_end, (Kind::Int64, a.device())).view([width, 1]);
            let outputs = Tensor::arange_start(o0, o1, (Kind::Int64, a.device())).view([1, o1 - o0]);
            let mask = inputs.le_tensor(&(outputs + offset)).to_kind(a.kind());
            total += sum_per_record(&(cols.transpose(1, 2).matmul(&g_block) * mask).square());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn random(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        (a - b).abs().max().double_value(&[]) <= 1e-9 * (1.0 + b.abs().max().double_value(&[]))
    }

    #[test]
    fn ghost_and_materialised_norms_agree() {
        tch::manual_seed(1);
        let (a, g) = (random(&[3, 5, 7]), random(&[3, 5, 4]));
        let direct = materialised_norm2(&a, &g);
        assert!(close(&ghost_norm2(&a, &g), &direct));
        assert!(close(&weight_norm2(&a, &g), &direct));
        // Record 1 on its own: a^T g summed over its rows.
        let one = a.get(1).tr().matmul(&g.get(1)).square().sum(Kind::Double);
        assert!((direct.double_value(&[1]) - one.double_value(&[])).abs() < 1e-9);
    }

    #[test]
    fn masked_norms_match_the_masked_gradient() {
        tch::manual_seed(2);
        // Sizes across several blocks, with offsets of auto1 (0) and auto2 (first logit row).
        for (n_in, n_out, offset) in [(150i64, 150i64, 0i64), (150, 130, 19), (10, 200, 3), (200, 10, 150)] {
            let (a, g) = (random(&[2, 6, n_in]), random(&[2, 6, n_out]));
            let mask = Tensor::ones([n_out, n_in], (Kind::Double, Device::Cpu)).tril(offset);
            // The gradient of a masked weight [out, in] is mask * (g^T a).
            let direct = (g.transpose(1, 2).matmul(&a) * mask).square().sum_dim_intlist(
                [1i64, 2].as_slice(),
                false,
                Kind::Double,
            );
            let blocked = masked_weight_norm2(&a, &g, offset);
            assert!(close(&blocked, &direct), "{n_in} {n_out} {offset}");
        }
    }
}
