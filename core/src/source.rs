//! Records read one patient at a time, in as many passes as a step needs: what `halo prepare` streams
//! through counting, fitting and encoding without holding every record as strings.
//!
//! OMOP folders are read once into a compact, interned store ([`crate::omop::OmopStore`]) and each pass
//! builds one patient at a time from it; MEDS and JSONL are read whole (their readers hold the records).
//! Every pass gives the same patients in the same order, with [`crate::ReadOptions::bounds`] applied, as
//! [`crate::read_dataset`] gives them.

use crate::bounds::{self, Bounds};
use crate::error::Result;
use crate::omop::OmopStore;
use crate::record::{Patient, ReadReport};
use crate::{Format, ReadOptions};
use std::path::Path;

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
            Format::Jsonl => in_memory(crate::jsonl::read_jsonl(path)?),
            Format::Meds => in_memory(crate::meds::read_meds(path, options)?),
        };
        Ok(Records {
            store,
            bounds,
            report,
            passes: 0,
        })
    }

    /// Records already in memory (tests, and callers that have them).
    pub fn from_patients(patients: Vec<Patient>) -> Records {
        Records {
            store: Store::InMemory(patients),
            bounds: Bounds::default(),
            report: ReadReport::default(),
            passes: 1,
        }
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
        }
        self.passes += 1;
        Ok(())
    }

    /// Every patient at once, with the report.
    pub fn into_dataset(mut self) -> Result<crate::record::Dataset> {
        let patients = match std::mem::replace(&mut self.store, Store::InMemory(Vec::new())) {
            Store::InMemory(patients) => patients,
            Store::Omop(store) => {
                self.store = Store::Omop(store);
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
