//! `halo test`'s figures: a checkpoint scored on its test split, with codes unseen in training taken out as
//! the reference's test_model.py does (they cannot be learned), and the figures with them kept beside.

use crate::checkpoint::Checkpoint;
use crate::score::{score, Scores};
use halo_core::corpus::Corpus;
use halo_core::encoding::EncodedPatient;
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
    let encoded: Vec<_> = scored
        .iter()
        .flat_map(|p| ck.encoding.encode_windows(p, &index, ck.spec.as_ref(), &mut unknown))
        .collect();
    let train_ids: HashSet<&str> = ck.split.train.iter().map(String::as_str).collect();
    let train = patients.iter().filter(|p| train_ids.contains(p.id.as_str()));
    let train_windows = train.flat_map(|p| ck.encoding.encode_windows(p, &index, ck.spec.as_ref(), &mut 0));
    let seen = seen_codes(ck.encoding.vocab_size(), train_windows);
    TestReport {
        unknown_codes: unknown,
        ..score_encoded(ck, encoded, seen, which, batch_size, device)
    }
}

/// [`score_test_split`] from a prepared corpus (the checkpoint's own, or the one it was trained from): its
/// test split, with the codes its training split never has taken out. No records are read.
pub fn score_test_corpus(ck: &Checkpoint, corpus: &Corpus, batch_size: usize, device: Device) -> TestReport {
    let encoded: Vec<_> = corpus.test.iter().collect();
    let seen = seen_codes(ck.encoding.vocab_size(), corpus.train.iter());
    TestReport {
        unknown_codes: corpus.info.unknown_codes,
        ..score_encoded(ck, encoded, seen, "test split", batch_size, device)
    }
}

/// Which vocabulary entries the training sequences have; `None` when there are none.
fn seen_codes(vocab: usize, train: impl Iterator<Item = EncodedPatient>) -> Option<Vec<bool>> {
    let mut seen = vec![false; vocab];
    let mut any = false;
    for window in train {
        any = true;
        for c in window.visits.iter().flatten() {
            seen[*c as usize] = true;
        }
    }
    any.then_some(seen)
}

fn score_encoded(
    ck: &Checkpoint,
    mut encoded: Vec<EncodedPatient>,
    seen: Option<Vec<bool>>,
    which: &'static str,
    batch_size: usize,
    device: Device,
) -> TestReport {
    let with_unseen = score(&ck.model, &encoded, &ck.encoding, batch_size, device).scores();
    let mut removed = 0usize;
    if let Some(seen) = &seen {
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
        note: seen
            .is_none()
            .then_some("the training records are not in this data: codes unseen in training could not be removed"),
        unknown_codes: 0,
    }
}
