//! Workers sampling batches side by side (`generate_on`) write the records one model writes, in index order,
//! whatever the number of workers and the batch size; an error in the middle of a run stops it with that
//! error (no worker left waiting).

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, generate_on, CodeModule, Model, Plan, SampleStats};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model")
}

fn plan(records: std::ops::Range<u64>, batch_size: usize) -> Plan {
    Plan {
        seed: 5,
        records,
        batch_size,
        conditions: None,
    }
}

fn workers(count: usize) -> Vec<Model> {
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    Model::load_workers(
        &fixture(),
        runtime::init(None).unwrap(),
        &options,
        CodeModule::Auto,
        count,
    )
    .unwrap()
}

/// The records' JSONL lines, and the first index of each batch as `on_batch` saw it.
fn lines_on(models: &mut [Model], plan: &Plan) -> (Vec<u8>, Vec<u64>, SampleStats) {
    let (mut lines, mut starts) = (Vec::new(), Vec::new());
    let calibration = models[0].manifest.calibration.clone();
    let stats = generate_on(models, plan, calibration.as_ref(), |batch| {
        starts.push(batch[0].raw.index);
        for s in &batch {
            lines.extend(halo_infer::record_line(&s.patient));
        }
        Ok(())
    })
    .unwrap();
    (lines, starts, stats)
}

#[test]
fn workers_write_the_records_of_one_model_in_order() {
    let mut one = workers(1);
    let mut expected = Vec::new();
    let single = generate(&mut one[0], &plan(3..40, 4), |batch| {
        for s in &batch {
            expected.extend(halo_infer::record_line(&s.patient));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(single.records, 37);
    for (count, batch_size) in [(2, 1), (3, 4), (3, 5), (2, 64)] {
        let mut models = workers(count);
        assert_eq!(models.len(), count);
        let (lines, starts, stats) = lines_on(&mut models, &plan(3..40, batch_size));
        assert!(lines == expected, "{count} workers, batch {batch_size}: other records");
        let want_starts: Vec<u64> = (3..40).step_by(batch_size).collect();
        assert_eq!(
            starts, want_starts,
            "{count} workers, batch {batch_size}: batches out of order"
        );
        assert_eq!((stats.records, stats.batches), (37, want_starts.len()));
        if batch_size == 4 {
            assert_eq!(stats.steps, single.steps);
            assert_eq!(stats.code_module_macs, single.code_module_macs);
        }
    }
}

#[test]
fn an_error_in_on_batch_stops_the_workers_with_it() {
    let mut models = workers(2);
    let calibration = models[0].manifest.calibration.clone();
    let mut seen = 0;
    let err = generate_on(&mut models, &plan(0..200, 3), calibration.as_ref(), |_| {
        seen += 1;
        match seen {
            5 => Err(halo_infer::Error::Invalid("stop here".into())),
            _ => Ok(()),
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("stop here"), "{err}");
    assert_eq!(seen, 5);
}
