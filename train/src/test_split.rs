//! `halo test`'s figures: a checkpoint scored on its test split, with codes unseen in training taken out as
//! the reference's test_model.py does (they cannot be learned), and the figures with them kept beside.

use crate::checkpoint::Checkpoint;
use crate::score::{score, Scores};
use halo_core::record::{Patient, Split};
use serde::Serialize;
use std::collections::HashSet;
use tch::Device;

#[derive(Debug, Serialize)]
pub struct TestReport {
    #[serde(flatten)]
    pub scores: Scores,
    /// Which records were scored.
    pub scored: &'static str,
    pub codes_unseen_in_training_removed: usize,
    pub with_unseen_codes: Scores,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// Codes of the scored records that are not in the vocabulary.
    pub unknown_codes: usize,
}

/// Scores the records of `patients` in the checkpoint's test split (all of them when none is).
pub fn score_test_split(ck: &Checkpoint, patients: &[Patient], batch_size: usize, device: Device) -> TestReport {
    let in_test = ck.split.lookup();
    let mut scored: Vec<&Patient> = patients
        .iter()
        .filter(|p| in_test.get(p.id.as_str()) == Some(&Split::Test))
        .collect();
    let which = if scored.is_empty() {
        scored = patients.iter().collect();
        "all records (none belongs to the checkpoint's test split)"
    } else {
        "test split"
    };
    let index = ck.encoding.index();
    let mut unknown = 0;
    let mut encoded: Vec<_> = scored
        .iter()
        .flat_map(|p| ck.encoding.encode_windows(p, &index, ck.spec.as_ref(), &mut unknown))
        .collect();
    let with_unseen = score(&ck.model, &encoded, &ck.encoding, batch_size, device).scores();

    let train_ids: HashSet<&str> = ck.split.train.iter().map(String::as_str).collect();
    let mut seen = vec![false; ck.encoding.vocab_size()];
    let mut train_found = 0;
    for p in patients.iter().filter(|p| train_ids.contains(p.id.as_str())) {
        train_found += 1;
        for window in ck.encoding.encode_windows(p, &index, ck.spec.as_ref(), &mut 0) {
            for c in window.visits.iter().flatten() {
                seen[*c as usize] = true;
            }
        }
    }
    let mut removed = 0usize;
    if train_found > 0 {
        for visit in encoded.iter_mut().flat_map(|p| p.visits.iter_mut()) {
            let before = visit.len();
            visit.retain(|c| seen[*c as usize]);
            removed += before - visit.len();
        }
    }
    TestReport {
        scores: score(&ck.model, &encoded, &ck.encoding, batch_size, device).scores(),
        scored: which,
        codes_unseen_in_training_removed: removed,
        with_unseen_codes: with_unseen,
        note: (train_found == 0)
            .then_some("the training records are not in this data: codes unseen in training could not be removed"),
        unknown_codes: unknown,
    }
}
