use super::*;
use rand::{Rng, SeedableRng};

/// A random module: E = 8 and V = 150 (three blocks, the last one short).
fn random_head(seed: u64) -> NativeHead {
    let layout = NativeCodeModule { n_embd: 8, vocab: 150 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut values: Vec<f32> = (0..layout.values()).map(|_| rng.random::<f32>() - 0.5).collect();
    // Zero where the mask cuts, as `halo export` writes the panels.
    let panels = layout.part_lengths()[0] + layout.part_lengths()[1];
    for (b, range) in layout.panel_offsets().windows(2).enumerate() {
        let rows = values[panels + range[0]..panels + range[1]].chunks_mut(BLOCK);
        for (h, row) in rows.enumerate() {
            for (k, w) in row.iter_mut().enumerate() {
                let j = b * BLOCK + k;
                if j >= layout.vocab || h >= layout.n_embd + j {
                    *w = 0.0;
                }
            }
        }
    }
    NativeHead::from_values(layout, values).unwrap()
}

#[test]
fn a_panel_weight_where_the_mask_cuts_is_refused() {
    let head = random_head(1);
    let layout = head.layout;
    let mut values = head.values.clone();
    let at = head.parts[2] + head.panel_offsets[1] + (layout.n_embd + 70) * BLOCK + 3;
    values[at] = 0.25;
    let err = NativeHead::from_values(layout, values).err().expect("refused");
    assert!(err.to_string().contains("block 1, hidden unit 78"), "{err}");
}

/// A random history (seeded by `seed`) and a row that starts a visit from it.
fn started_row(head: &NativeHead, seed: u64) -> (Vec<f32>, RowState) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let history: Vec<f32> = (0..head.layout.n_embd)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let mut row = RowState::new(head);
    row.start(head, &history);
    (history, row)
}

/// Walks one visit by hand: every logit the cursor gives (in blocks, folded as the walk goes, and a
/// category's values given unset, one of them past its block) equals, bit for bit, the logit computed
/// from scratch with the codes set so far; setting codes changes later logits.
#[test]
fn cursor_logits_equal_the_logits_from_scratch_bit_for_bit() {
    let head = random_head(3);
    let v = head.layout.vocab;
    let (history, mut row) = started_row(&head, 4);
    let mut expected_visit = vec![0f32; v];
    let mut set = 0;
    let mut j = 0;
    while j < v {
        if j % BLOCK == 0 {
            start_block(&head, &mut [&mut row], j / BLOCK);
        }
        let scratch = head.logits(&history, &expected_visit);
        let mut cursor = NativeCursor {
            head: &head,
            row: &mut row,
            reads: None,
            set_count: 0,
        };
        // Categories across a block border (j..j + len, none set): their values' logits. The one at 60 reads
        // block 1 aside again after the one at 40 did and a code was set: the first sums must not be reused.
        // The one at 124 reaches lane 21 of block 2: its first sixteen lanes are folded again as thirty-two.
        let category = match j {
            40 => Some(30),
            60 => Some(10),
            124 => Some(26),
            _ => None,
        };
        if let Some(len) = category {
            for (k, want) in scratch.iter().enumerate().take(j + len).skip(j) {
                let logit = cursor.logit_given_unset(k, j).unwrap();
                assert_eq!(logit.to_bits(), want.to_bits(), "category value {k}");
            }
            // The category ends with its third value set; the walk goes on after it.
            cursor.set(j + 2);
            expected_visit[j + 2] = 1.0;
            set += 1;
            let logit = cursor.logit(j + 3).unwrap();
            let now = head.logits(&history, &expected_visit);
            assert_eq!(
                logit.to_bits(),
                now[j + 3].to_bits(),
                "code {} after the category",
                j + 3
            );
            j += 4;
            continue;
        }
        let logit = cursor.logit(j).unwrap();
        assert_eq!(logit.to_bits(), scratch[j].to_bits(), "code {j}");
        if cursor.logit(j + BLOCK).is_some() {
            panic!("a logit past the block must not be given");
        }
        if j % 5 == 1 {
            cursor.set(j);
            expected_visit[j] = 1.0;
            set += 1;
        }
        j += 1;
    }
    assert!(set > 20);
    // Setting a code moves the logits after it.
    let without = head.logits(&history, &vec![0.0; v]);
    let with = head.logits(&history, &expected_visit);
    assert!(without[..2] == with[..2] && without[100] != with[100]);
}

/// A run's logits, folded ahead at once, equal the logits from scratch bit for bit, and so do the logits
/// after a code set inside a run (the cursor folds again from before the run) and after a run left whole.
#[test]
fn run_logits_and_a_code_set_inside_a_run_equal_the_logits_from_scratch() {
    let head = random_head(7);
    let v = head.layout.vocab;
    let (history, mut row) = started_row(&head, 8);
    let mut expected = vec![0f32; v];
    start_block(&head, &mut [&mut row], 0);
    let mut cursor = NativeCursor {
        head: &head,
        row: &mut row,
        reads: None,
        set_count: 0,
    };
    let mut logits = [0f32; crate::walk::RUN];
    // Runs from code 3: the first whole, the next broken by a code set at its fifth, then two more.
    let mut j = 3;
    for set_at in [None, Some(4), None, Some(0)] {
        let known = cursor.run_logits(j..j + 40, &mut logits);
        assert_eq!(known, crate::walk::RUN.min(BLOCK - j), "run from {j}");
        let scratch = head.logits(&history, &expected);
        for (i, logit) in logits[..known].iter().enumerate() {
            assert_eq!(logit.to_bits(), scratch[j + i].to_bits(), "code {}", j + i);
        }
        match set_at {
            Some(i) => {
                cursor.set(j + i);
                expected[j + i] = 1.0;
                j += i + 1;
            }
            None => j += known,
        }
    }
    assert_eq!(cursor.set_count, 2);
    // One by one after the runs, as the walk would go on.
    let scratch = head.logits(&history, &expected);
    assert_eq!(cursor.logit(j).unwrap().to_bits(), scratch[j].to_bits());
    // Past the block: nothing known.
    assert_eq!(cursor.run_logits(BLOCK..BLOCK + 4, &mut logits), 0);
}

/// A row computed in a tile of four gives the same sums as alone.
#[test]
fn rows_in_a_tile_equal_rows_alone() {
    let head = random_head(5);
    let e = head.layout.n_embd;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let history: Vec<f32> = (0..6 * e).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let mut rows: Vec<RowState> = (0..6).map(|_| RowState::new(&head)).collect();
    start_rows(&head, &mut rows.iter_mut().collect::<Vec<_>>(), &history);
    start_block(&head, &mut rows.iter_mut().collect::<Vec<_>>(), 1);
    for (r, together) in rows.iter().enumerate() {
        let mut alone = RowState::new(&head);
        alone.start(&head, &history[r * e..(r + 1) * e]);
        start_block(&head, &mut [&mut alone], 1);
        assert!(alone
            .pre
            .iter()
            .zip(&together.pre)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(alone
            .sums
            .iter()
            .zip(&together.sums)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

/// The kernels that keep four rows' sums in registers take the width the CPU's registers hold (64 lanes on
/// AVX-512, 16 on AVX2, 8 otherwise): every width gives the same bits, so records do not depend on the CPU.
/// Six rows (a tile and two alone), a last history panel of 30 units (not a multiple of any width).
#[test]
fn every_register_width_gives_the_same_bits() {
    let head = random_head(7);
    let e = head.layout.n_embd;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let history: Vec<f32> = (0..6 * e).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    type Kernels = (
        fn(&mut [&mut RowState], &NativeHead, &[f32]),
        fn(&[[f32; BLOCK]], usize, &mut [&mut RowState]),
    );
    let widths: [(usize, Kernels); 3] = [
        (8, (add_history_at::<8>, start_block_sums_at::<8>)),
        (16, (add_history_at::<16>, start_block_sums_at::<16>)),
        (64, (add_history_at::<64>, start_block_sums_at::<64>)),
    ];
    let mut results = Vec::new();
    for (width, (add_history, start_block_sums)) in widths {
        let mut rows: Vec<RowState> = (0..6).map(|_| RowState::new(&head)).collect();
        for row in &mut rows {
            row.pre.copy_from_slice(head.bias1());
        }
        add_history(&mut rows.iter_mut().collect::<Vec<_>>(), &head, &history);
        let pre: Vec<u32> = rows.iter().flat_map(|r| r.pre.iter().map(|x| x.to_bits())).collect();
        let mut sums = Vec::new();
        for b in 0..head.layout.blocks() {
            let units = e + head.layout.block_codes(b).start;
            start_block_sums(head.panel(b), units, &mut rows.iter_mut().collect::<Vec<_>>());
            sums.extend(rows.iter().flat_map(|r| r.sums.iter().map(|x| x.to_bits())));
        }
        assert!(sums.iter().any(|&x| x != 0), "width {width}: sums computed");
        results.push((width, pre, sums));
    }
    for (width, pre, sums) in &results[1..] {
        assert!(
            *pre == results[0].1,
            "history sums at width {width} differ from width 8"
        );
        assert!(*sums == results[0].2, "block sums at width {width} differ from width 8");
    }
}
