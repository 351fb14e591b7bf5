//! Conditional generation and the label visit's demographic categories.

mod common;

use halo_infer::model::{Seen, SeenCodes};
use halo_infer::runtime::{self, SessionOptions};
use halo_infer::{generate, CodeModule, Conditions, Model, Plan, Sampled};
use std::path::{Path, PathBuf};

fn model_dir(tmp: &Path) -> PathBuf {
    let spec = common::Spec::fixture();
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 4.0, 2.0);
    common::build_model(tmp, &spec, 21, Some(&bias), Some(5.0))
}

fn load(dir: &Path) -> Model {
    let rt = runtime::init(None).unwrap();
    Model::load(dir, rt, &SessionOptions::default()).unwrap()
}

fn sample(model: &mut Model, n: u64, conditions: Option<Conditions>) -> Vec<Sampled> {
    let mut out = Vec::new();
    generate(
        model,
        &Plan {
            seed: 9,
            records: 0..n,
            batch_size: 64,
            conditions,
        },
        |b| {
            out.extend(b);
            Ok(())
        },
    )
    .unwrap();
    out
}

fn has_label(s: &Sampled, name: &str) -> bool {
    s.patient.labels.as_ref().unwrap()[name]
}

#[test]
fn every_record_has_one_value_per_demographic_category() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let mut model = load(&dir);
    let enc = model.manifest.encoding.clone();
    let records = sample(&mut model, 200, None);
    let mut sexes = std::collections::BTreeSet::new();
    for s in &records {
        for cat in &enc.demographic_categories {
            let first = enc.code_vocab_size + cat.first;
            let n = s
                .raw
                .labels
                .iter()
                .filter(|&&c| (first..first + cat.len).contains(&(c as usize)))
                .count();
            assert_eq!(n, 1, "record {} has {n} {} values", s.raw.index, cat.name);
        }
        let d = &s.patient.demographics;
        sexes.insert(d.sex.clone().unwrap());
        assert!(d.race.is_some());
        let year = d.birth_year.unwrap();
        assert!((1940..1970).contains(&year), "birth year {year}");
        assert!(d.birth_date.as_deref().unwrap().starts_with(&year.to_string()));
        // Every label of the model is listed.
        assert_eq!(s.patient.labels.as_ref().unwrap().len(), 3);
    }
    assert_eq!(sexes.len(), 2, "both sexes are sampled");
}

#[test]
fn fixed_labels_are_carried_by_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let mut model = load(&dir);
    let enc = model.manifest.encoding.clone();
    let free = sample(&mut model, 200, None);
    let free_rate = free.iter().filter(|s| has_label(s, "phenotype_1")).count();
    assert!(
        free_rate > 0 && free_rate < 200,
        "phenotype_1 in {free_rate}/200 unconditioned"
    );

    let c = Conditions::parse("phenotype_1=1,phenotype_2=0,SEX/M=1", &enc).unwrap();
    let records = sample(&mut model, 200, Some(c));
    for s in &records {
        assert!(has_label(s, "phenotype_1"), "record {}", s.patient.id);
        assert!(!has_label(s, "phenotype_2"), "record {}", s.patient.id);
        assert_eq!(s.patient.demographics.sex.as_deref(), Some("M"));
        assert!(s.patient.demographics.race.is_some());
    }
    // Excluding a value leaves the category to the others.
    let c = Conditions::parse("sex/F=0", &enc).unwrap();
    for s in sample(&mut model, 100, Some(c)) {
        assert_eq!(s.patient.demographics.sex.as_deref(), Some("M"));
    }
}

#[test]
fn condition_files_cycle_lines_and_draw_proportions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let mut model = load(&dir);
    let enc = model.manifest.encoding.clone();

    let file = tmp.path().join("labels.jsonl");
    std::fs::write(
        &file,
        "{\"labels\": {\"phenotype_0\": 1}}\n{\"labels\": {\"phenotype_0\": 0, \"SEX/F\": 1}}\n",
    )
    .unwrap();
    let c = Conditions::parse(file.to_str().unwrap(), &enc).unwrap();
    assert_eq!(c.len(), 2);
    for s in sample(&mut model, 60, Some(c)) {
        let even = s.raw.index % 2 == 0;
        assert_eq!(has_label(&s, "phenotype_0"), even, "record {}", s.raw.index);
        if !even {
            assert_eq!(s.patient.demographics.sex.as_deref(), Some("F"));
        }
    }

    let file = tmp.path().join("proportions.jsonl");
    std::fs::write(
        &file,
        "{\"proportions\": {\"phenotype_0\": 0.3, \"RACE/asian\": 0.5, \"RACE/black\": 0.5}}\n",
    )
    .unwrap();
    let c = Conditions::parse(file.to_str().unwrap(), &enc).unwrap();
    let records = sample(&mut model, 600, Some(c));
    let rate = records.iter().filter(|s| has_label(s, "phenotype_0")).count() as f64 / 600.0;
    // Binomial(600, 0.3): standard deviation 0.019; fixed seed.
    assert!((rate - 0.3).abs() < 0.06, "phenotype_0 rate {rate}");
    let asian = records
        .iter()
        .filter(|s| s.patient.demographics.race.as_deref() == Some("asian"))
        .count() as f64
        / 600.0;
    assert!((asian - 0.5).abs() < 0.07, "asian rate {asian}");
    assert!(records
        .iter()
        .all(|s| s.patient.demographics.race.as_deref() != Some("white")));
}

#[test]
fn bad_conditions_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = common::encoding(&common::Spec::fixture());
    let err = Conditions::parse("diabetes=1", &enc).unwrap_err().to_string();
    assert!(err.contains("unknown label `diabetes`"), "{err}");
    assert!(err.contains("phenotype_0") && err.contains("SEX/F"), "{err}");
    let err = Conditions::parse("phenotype_0=2", &enc).unwrap_err().to_string();
    assert!(err.contains("must be 0 or 1"), "{err}");
    let err = Conditions::parse("SEX/F=1,SEX/M=1", &enc).unwrap_err().to_string();
    assert!(err.contains("both set to 1"), "{err}");
    let err = Conditions::parse("SEX/F=0,SEX/M=0", &enc).unwrap_err().to_string();
    assert!(err.contains("every sex value is set to 0"), "{err}");
    let err = Conditions::parse("no-such-file.jsonl", &enc).unwrap_err().to_string();
    assert!(err.contains("neither an existing file"), "{err}");
    let file = tmp.path().join("c.jsonl");
    std::fs::write(&file, "{\"labels\": {\"phenotype_0\": 1}}\n{\"proportion\": {}}\n").unwrap();
    let err = Conditions::parse(file.to_str().unwrap(), &enc).unwrap_err().to_string();
    assert!(
        err.contains("c.jsonl:2") && err.contains("unknown key `proportion`"),
        "{err}"
    );
    std::fs::write(&file, "{\"proportions\": {\"phenotype_0\": 1.5}}\n").unwrap();
    let err = Conditions::parse(file.to_str().unwrap(), &enc).unwrap_err().to_string();
    assert!(err.contains("between 0 and 1"), "{err}");
}

#[test]
fn a_demographic_category_is_one_draw_from_its_renormalised_conditionals() {
    // No phenotype labels: sex is the label visit's first category, so its conditionals come from the
    // very first code-head pass of a record, which the test can run itself.
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = common::Spec::fixture();
    spec.labels = 0;
    let enc = common::encoding(&spec);
    let dir = common::build_model(tmp.path(), &spec, 33, None, Some(5.0));
    // Compared: the dense code head is loaded too (the test reads its first pass).
    let rt = runtime::init(None).unwrap();
    let mut model = Model::load_with(&dir, rt, &SessionOptions::default(), CodeModule::Compared).unwrap();
    let (v, e) = (enc.vocab_size(), spec.n_embd);
    let start: &[u32] = &[enc.start_index() as u32];
    let mut seen = SeenCodes::new(1, v);
    seen.add(&[start]);
    let (mut history, mut logits) = (Vec::new(), Vec::new());
    let empty = model.empty_cache();
    model
        .step(&[start], Seen::Codes(&seen), &empty, 0, &mut history)
        .unwrap();
    assert_eq!(history.len(), e);
    model.head(&history, &vec![0f32; v], 1, &mut logits).unwrap();
    let p = |j: usize| 1.0 / (1.0 + (-logits[j] as f64).exp());
    let (f, m) = (enc.code_vocab_size, enc.code_vocab_size + 1);
    let expected_f = p(f) / (p(f) + p(m));
    let n = 3000;
    let records = sample(&mut model, n, None);
    let share_f = records
        .iter()
        .filter(|s| s.patient.demographics.sex.as_deref() == Some("F"))
        .count() as f64
        / n as f64;
    let sd = (expected_f * (1.0 - expected_f) / n as f64).sqrt();
    assert!(
        (share_f - expected_f).abs() < 4.0 * sd,
        "F in {share_f:.3} of records, expected {expected_f:.3} (p(F) {:.3}, p(M | F not set) {:.3})",
        p(f),
        p(m)
    );
}

/// The fixture's shape with labels derived from codes (see `common::Spec::derived_labels`).
fn derived_model_dir(tmp: &Path) -> PathBuf {
    let spec = common::Spec {
        derived_labels: true,
        ..common::Spec::fixture()
    };
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 4.0, 2.0);
    common::build_model(tmp, &spec, 21, Some(&bias), Some(5.0))
}

fn sample_with_stats(
    model: &mut Model,
    n: u64,
    batch_size: usize,
    conditions: Option<Conditions>,
) -> halo_infer::Result<(Vec<Sampled>, halo_infer::SampleStats)> {
    let mut out = Vec::new();
    let stats = generate(
        model,
        &Plan {
            seed: 9,
            records: 0..n,
            batch_size,
            conditions,
        },
        |b| {
            out.extend(b);
            Ok(())
        },
    )?;
    Ok((out, stats))
}

/// Whether the record's sampled codes hold one of the derived label's codes.
fn codes_give(s: &Sampled, codes: &[u32]) -> bool {
    s.raw.visits.iter().flatten().any(|c| codes.contains(c))
}

#[test]
fn labels_derived_from_codes_agree_with_the_sampled_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = derived_model_dir(tmp.path());
    let mut model = load(&dir);
    let enc = model.manifest.encoding.clone();
    assert_eq!(enc.derived_labels.len(), 3);
    let (records, stats) = sample_with_stats(&mut model, 400, 64, None).unwrap();
    assert_eq!(stats.rejected, 0, "nothing is rejected without conditions");
    let mut set = vec![0usize; enc.derived_labels.len()];
    for s in &records {
        for d in &enc.derived_labels {
            let code = (enc.code_vocab_size + d.label) as u32;
            let name = enc.tokens[code as usize].to_string();
            let expected = codes_give(s, &d.codes);
            assert_eq!(
                s.raw.labels.contains(&code),
                expected,
                "record {} label {name}",
                s.raw.index
            );
            assert_eq!(
                has_label(s, &name),
                expected,
                "record {} decoded label {name}",
                s.raw.index
            );
            set[d.label] += usize::from(expected);
        }
    }
    // Both outcomes occur for the labels that codes can set; the label without codes is never set (the
    // random model samples it about a fifth of the time in the label visit).
    assert!(set[0] > 40 && set[0] < 360, "phenotype_0 set in {} of 400", set[0]);
    assert!(set[1] > 40 && set[1] < 360, "phenotype_1 set in {} of 400", set[1]);
    assert_eq!(set[2], 0);
}

#[test]
fn conditions_on_derived_labels_are_met_by_resampling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = derived_model_dir(tmp.path());
    let mut model = load(&dir);
    let enc = model.manifest.encoding.clone();
    let codes_of = |label: usize| {
        enc.derived_labels
            .iter()
            .find(|d| d.label == label)
            .unwrap()
            .codes
            .clone()
    };
    let list = |s: &str| Some(Conditions::from_list(s, &enc).unwrap());

    let (with, stats) = sample_with_stats(&mut model, 300, 64, list("phenotype_0=1,phenotype_1=0")).unwrap();
    assert_eq!(with.len(), 300);
    for s in &with {
        assert!(
            codes_give(s, &codes_of(0)),
            "record {} lacks phenotype_0's codes",
            s.raw.index
        );
        assert!(
            !codes_give(s, &codes_of(1)),
            "record {} has phenotype_1's codes",
            s.raw.index
        );
        assert!(has_label(s, "phenotype_0") && !has_label(s, "phenotype_1"));
    }
    assert!(
        stats.rejected > 0,
        "the random model does not meet the conditions by itself"
    );
    assert_eq!(stats.records, 300);

    // Retries depend on the record alone: the batch size does not change the records.
    let (one_by_one, stats_1) = sample_with_stats(&mut model, 60, 1, list("phenotype_0=1,phenotype_1=0")).unwrap();
    assert_eq!(
        one_by_one.iter().map(|s| &s.raw).collect::<Vec<_>>(),
        with[..60].iter().map(|s| &s.raw).collect::<Vec<_>>()
    );
    assert!(stats_1.rejected > 0);

    // A label that no vocabulary code sets cannot be forced to 1, nor given a proportion above 0: refused at
    // once, naming it, before any sampling (formerly 1,000 samples a record, then an error).
    assert!(codes_of(2).is_empty());
    let err = Conditions::from_list("phenotype_0=1,phenotype_2=1", &enc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`phenotype_2` can never be set"), "{err}");
    let file = tmp.path().join("conditions.jsonl");
    std::fs::write(
        &file,
        "{\"labels\": {\"phenotype_0\": 1}}\n{\"proportions\": {\"phenotype_2\": 0.1}}\n",
    )
    .unwrap();
    let err = Conditions::from_file(&file, &enc).unwrap_err().to_string();
    assert!(
        err.contains("conditions.jsonl:2") && err.contains("`phenotype_2` can never be set"),
        "{err}"
    );
    std::fs::write(&file, "{\"proportions\": {\"phenotype_2\": 0}}\n").unwrap();
    assert!(Conditions::from_file(&file, &enc).is_ok());
    // ... and forcing it to 0 always holds.
    let (never, stats_0) = sample_with_stats(&mut model, 50, 16, list("phenotype_2=0")).unwrap();
    assert_eq!((never.len(), stats_0.rejected), (50, 0));
}
