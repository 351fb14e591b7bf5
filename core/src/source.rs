//! Records read one patient at a time, in as many passes as a step needs: what `halo prepare` streams
//! through counting, fitting and encoding without holding every record as strings.
//!
//! OMOP folders are read once into a compact, interned store ([`crate::omop::OmopStore`]) and each pass
//! builds one patient at a time from it; MEDS folders are read one parquet file at a time on each pass
//! ([`crate::meds::MedsShards`]; read whole when a subject spans files); JSONL is read again line by line on
//! every pass (only its ids are held).
//! Every pass gives the same patients in the same order, with [`crate::ReadOptions::bounds`] applied, as
//! [`crate::read_dataset`] gives them.

use crate::bounds::{self, Bounds};
use crate::error::Result;
use crate::meds::{MedsLayout, MedsShards};
use crate::omop::OmopStore;
use crate::record::{Patient, ReadReport};
use crate::{Format, ReadOptions};
use std::path::Path;

/// Adds what the bounds dropped (counted on a first pass) to a reader's report.
fn merge_bounds_counts(report: &mut ReadReport, counted: ReadReport) {
    report.patients_without_visits += counted.patients_without_visits;
    for (what, n) in counted.skipped {
        *report.skipped.entry(what).or_default() += n;
    }
}

/// Patients to pass over, repeatably.
pub struct Records {
    store: Store,
    bounds: Bounds,
    /// What the reader skipped, plus (after the first pass) what the bounds dropped.
    report: ReadReport,
    passes: usize,
}

enum Store {
    Omop(Box<OmopStore>),
    /// Read again, line by line, on every pass.
    Jsonl(std::path::PathBuf),
    Meds(MedsShards),
    /// Read whole; the bounds already applied.
    InMemory(Vec<Patient>),
}

impl Records {
    /// Opens `path` in `format` (detected when `None`).
    pub fn open(path: &Path, format: Option<Format>, options: &ReadOptions) -> Result<Records> {
        let format = match format {
            Some(f) => f,
            None => Format::detect(path)?,
        };
        let bounds = options.bounds.clone();
        let in_memory = |mut dataset: crate::record::Dataset| {
            bounds::apply(&mut dataset, &bounds);
            (Store::InMemory(dataset.patients), dataset.report)
        };
        let (store, report) = match format {
            Format::Omop => {
                let store = OmopStore::read(path)?;
                let report = store.report.clone();
                (Store::Omop(Box::new(store)), report)
            }
            Format::Jsonl => {
                // The first reading fills the report (and finds any error): a file that does not read fails here.
                let mut report = ReadReport::default();
                crate::jsonl::for_each_jsonl(path, &mut report, &mut |_| Ok(()))?;
                (Store::Jsonl(path.to_path_buf()), report)
            }
            Format::Meds => match MedsShards::open(path, options)? {
                MedsLayout::Sharded(shards) => (Store::Meds(shards), ReadReport::default()),
                MedsLayout::SubjectsSpanFiles(subjects) => {
                    let (store, mut report) = in_memory(crate::meds::read_meds(path, options)?);
                    report
                        .skipped
                        .insert(crate::meds::SUBJECTS_SPAN_FILES.to_string(), subjects);
                    (store, report)
                }
            },
        };
        Ok(Records {
            store,
            bounds,
            report,
            passes: 0,
        })
    }

    /// Calls `each` with every patient, in the same order on every pass.
    pub fn pass(&mut self, each: &mut dyn FnMut(&Patient) -> Result<()>) -> Result<()> {
        let first = self.passes == 0;
        match &self.store {
            Store::InMemory(patients) => {
                for p in patients {
                    each(p)?;
                }
            }
            Store::Jsonl(path) => {
                let mut scratch = ReadReport::default();
                let mut counted = ReadReport::default();
                let report = if first { &mut counted } else { &mut scratch };
                let bounds = &self.bounds;
                crate::jsonl::for_each_jsonl(path, &mut ReadReport::default(), &mut |mut p| {
                    if bounds::apply_one(&mut p, bounds, report) {
                        each(&p)?;
                    }
                    Ok(())
                })?;
                if first {
                    merge_bounds_counts(&mut self.report, counted);
                }
            }
            Store::Omop(store) => {
                let mut scratch = ReadReport::default();
                let report = if first { &mut self.report } else { &mut scratch };
                let bounds = &self.bounds;
                store.for_each_patient(&mut |mut p| {
                    if bounds::apply_one(&mut p, bounds, report) {
                        each(&p)?;
                    }
                    Ok(())
                })?;
            }
            Store::Meds(shards) => {
                let mut scratch = ReadReport::default();
                let report = if first { &mut self.report } else { &mut scratch };
                let bounds = &self.bounds;
                shards.for_each_patient(report, &mut |mut p, report| {
                    if bounds::apply_one(&mut p, bounds, report) {
                        each(&p)?;
                    }
                    Ok(())
                })?;
            }
        }
        self.passes += 1;
        Ok(())
    }

    /// Every patient at once, with the report.
    pub fn into_dataset(mut self) -> Result<crate::record::Dataset> {
        let patients = match std::mem::replace(&mut self.store, Store::InMemory(Vec::new())) {
            Store::InMemory(patients) => patients,
            streamed => {
                self.store = streamed;
                let mut patients = Vec::new();
                self.pass(&mut |p| {
                    patients.push(p.clone());
                    Ok(())
                })?;
                patients
            }
        };
        Ok(crate::record::Dataset {
            patients,
            report: self.report,
        })
    }

    /// What reading skipped or fixed; complete after the first [`Records::pass`].
    pub fn report(&self) -> &ReadReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, EncodingOptions, LabelSpec};
    use crate::record::Patient;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name)
    }

    fn collect(records: &mut Records) -> Vec<Patient> {
        let mut out = Vec::new();
        records
            .pass(&mut |p| {
                out.push(p.clone());
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn every_pass_gives_the_records_read_whole_with_the_bounds_counted_once() {
        // Bounds that drop something, so that counting them twice would show.
        let options = ReadOptions {
            bounds: Bounds {
                first_year: 1800,
                last_year: 2015,
                max_abs_lab_value: 1e12,
            },
            ..ReadOptions::default()
        };
        for name in ["tiny-omop", "synthea-60.jsonl"] {
            let whole = crate::read_dataset(&fixture(name), None, &options).unwrap();
            let mut records = Records::open(&fixture(name), None, &options).unwrap();
            let first = collect(&mut records);
            let second = collect(&mut records);
            assert_eq!(first, whole.patients, "{name}");
            assert_eq!(second, whole.patients, "{name}");
            assert_eq!(records.report(), &whole.report, "{name}");
            // The JSONL records have day offsets, not dates: nothing of theirs is out of the years.
            let dropped = whole
                .report
                .skipped
                .keys()
                .any(|k| k.starts_with("visits dated outside"));
            assert!(dropped || name.ends_with(".jsonl"), "{name}: {:?}", whole.report);
        }
    }

    #[test]
    fn a_streamed_fit_gives_the_encoding_of_the_records_in_memory() {
        for (name, visit_size_buckets) in [("tiny-omop", 0), ("tiny-omop", 4), ("synthea-60.jsonl", 0)] {
            let options = EncodingOptions {
                min_patients: 2,
                lab_buckets: 3,
                visit_size_buckets,
                max_visits: 8,
                ..EncodingOptions::default()
            };
            let spec = LabelSpec::default_omop();
            let all = crate::read_dataset(&fixture(name), None, &ReadOptions::default())
                .unwrap()
                .patients;
            // Every third record outside the training split.
            let in_train = |p: &Patient| p.id.bytes().map(usize::from).sum::<usize>() % 3 != 0;
            let train: Vec<&Patient> = all.iter().filter(|p| in_train(p)).collect();
            assert!(train.len() < all.len() && !train.is_empty());
            let whole = Encoding::fit(&all, &train, Some(&spec), options.clone()).unwrap();
            let mut records = Records::open(&fixture(name), None, &ReadOptions::default()).unwrap();
            let streamed = Encoding::fit_records(&mut records, &in_train, Some(&spec), options).unwrap();
            assert_eq!(
                serde_json::to_string(&streamed).unwrap(),
                serde_json::to_string(&whole).unwrap(),
                "{name}"
            );
            assert_eq!(whole.visit_size_edges.is_empty(), visit_size_buckets == 0, "{name}");
        }
    }
}
