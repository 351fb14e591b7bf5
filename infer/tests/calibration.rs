//! The sampling calibration `halo export` fits: on the fixture model (whose sampled visits hold fewer codes
//! than its training visits, and whose gaps come out longer), the fitted offset brings the mean visit size to
//! the training one, and the gap weights the gap histogram near the training one.

use halo_infer::calibrate::{calibrate, Event};
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::Model;
use std::path::Path;

#[test]
fn calibration_brings_sampled_visits_to_the_training_size() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    let mut model = Model::load(&dir, rt, &options).unwrap();
    let stored = model
        .manifest
        .calibration
        .take()
        .expect("the fixture is exported with a calibration");
    let mut steps = Vec::new();
    let fitted = calibrate(&mut model, 2000, &mut |event| {
        if let Event::Measured { measured, .. } = event {
            steps.push((measured.code_logit_offset, measured.codes_per_visit))
        }
    })
    .unwrap();
    let target = model.manifest.training.mean_codes_per_visit;
    let error = |mean: f64| (mean / target - 1.0).abs();
    assert_eq!(steps[0].0, 0.0, "the first step measures the model as it is: {steps:?}");
    // Its sampled visits hold about 7% fewer codes than its training visits (1.6% more before a lab value stood
    // for its code and a visit drew one bucket of a lab; 9% more before format 10 drew the first visit's
    // calendar and age buckets so that they meet); the calibration takes that to the search's tolerance.
    assert!(
        error(fitted.uncalibrated_codes_per_visit) > 0.03,
        "nothing to calibrate: {fitted:?}"
    );
    assert!(
        error(fitted.calibrated_codes_per_visit) < 0.005,
        "{fitted:?} after {steps:?}"
    );
    // The fixture's visits come out too small, so the offset is positive; the same as the stored one up to
    // the sample (2,000 records here, 4,000 at export).
    assert!(fitted.code_logit_offset > 0.0, "{fitted:?}");
    assert!(
        (fitted.code_logit_offset - stored.code_logit_offset).abs() < 0.05,
        "{fitted:?} vs {stored:?}"
    );
    // The fixture has dates: its gap histogram is fitted too.
    let (before, after) = (fitted.uncalibrated_gap_tvd.unwrap(), fitted.calibrated_gap_tvd.unwrap());
    assert!(
        before > 0.1 && after < halo_infer::calibrate::CONVERGED_TVD,
        "gap histogram total variation {before} -> {after}"
    );
    assert_eq!(
        fitted.gap_log_weights.len(),
        model.manifest.training.gap_bucket_shares.len()
    );
    // Its visits have types (outpatient, and the rarer ones as `<other>`): their shares are fitted too.
    assert_eq!(
        fitted.visit_type_log_weights.len(),
        model.manifest.training.visit_type_shares.len()
    );
    assert!(fitted.calibrated_visit_type_tvd.unwrap() < 0.03, "{fitted:?}");
    // Its persons have demographics: each category's value shares are fitted to the training patients'.
    let categories = model.manifest.encoding.demographic_categories.len();
    assert!(categories > 0, "the fixture has demographics");
    assert_eq!(model.manifest.training.demographic_shares.len(), categories);
    assert_eq!(fitted.demographic_log_weights.len(), categories, "{fitted:?}");
    let (before, after) = (
        fitted.uncalibrated_demographic_tvd.unwrap(),
        fitted.calibrated_demographic_tvd.unwrap(),
    );
    assert!(
        after < 0.03 && after <= before,
        "demographic total variation {before} -> {after}"
    );
    // Its first visits have calendar buckets and birth decades (format 10): where each decade's records start
    // in time is fitted to the training records' first visits.
    let decades = model.manifest.training.first_calendar_shares.len();
    assert!(
        decades > 0,
        "the fixture's training summary has the first visits' calendar"
    );
    assert_eq!(fitted.first_calendar_log_weights.len(), decades, "{fitted:?}");
    let (before, after) = (
        fitted.uncalibrated_first_calendar_tvd.unwrap(),
        fitted.calibrated_first_calendar_tvd.unwrap(),
    );
    assert!(
        after < 0.6 * before,
        "first visits' calendar total variation {before} -> {after}"
    );
    // Fitting passes each trial calibration to the sampler: the loaded manifest stays as it was.
    assert_eq!(model.manifest.calibration, None);
}
