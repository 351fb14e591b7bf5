//! Random HALO models for tests, the fixture and benchmarks: a synthetic vocabulary, random weights
//! (`halo_export::write_random_checkpoint`) with chosen code biases, exported to a model directory.
#![allow(dead_code)]

use halo_core::config::ModelConfig;
use halo_core::encoding::{
    CodeOrder, DemographicCategory, DerivedLabel, Encoding, EncodingOptions, LabelCategory, Token,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Shape of a synthetic model.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Plain medical codes.
    pub codes: usize,
    /// Lab codes, each with `lab_buckets` value buckets.
    pub labs: usize,
    pub lab_buckets: usize,
    /// Gap buckets (0 = no time codes at all).
    pub gap_buckets: usize,
    pub age_buckets: usize,
    /// Phenotype labels.
    pub labels: usize,
    /// Demographic categories: sex (F, M), race (3 values), birth_year (3 decades).
    pub demographics: bool,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_ctx: usize,
    /// Declare the gap and age buckets as exclusive visit groups (one gap on every later visit, one age
    /// on the first), as encodings fitted on dated records do.
    pub visit_groups: bool,
    /// Derive the phenotype labels from codes as a label spec does: label `l` is set by the plain codes
    /// `2l` and `2l + 1`, except the last label, which no vocabulary code sets (its codes were rare).
    pub derived_labels: bool,
    /// The visit transformer embeds the codes seen so far (`ModelConfig::seen_codes`, what `halo train`
    /// trains by default), so that the sampler's `seen` input is exercised.
    pub seen_codes: bool,
}

impl Spec {
    /// The statistical test's model: 4 codes, 1 label, n_ctx 3.
    pub fn tiny() -> Spec {
        Spec {
            codes: 4,
            labs: 0,
            lab_buckets: 0,
            gap_buckets: 0,
            age_buckets: 0,
            labels: 1,
            demographics: false,
            n_embd: 8,
            n_layer: 1,
            n_head: 2,
            n_ctx: 3,
            visit_groups: false,
            derived_labels: false,
            seen_codes: true,
        }
    }

    /// A small model exercising every token kind (the fixture's shape).
    pub fn fixture() -> Spec {
        Spec {
            codes: 24,
            labs: 2,
            lab_buckets: 3,
            gap_buckets: 4,
            age_buckets: 4,
            labels: 3,
            demographics: true,
            n_embd: 16,
            n_layer: 2,
            n_head: 2,
            n_ctx: 8,
            visit_groups: false,
            derived_labels: false,
            seen_codes: true,
        }
    }

    /// The `small` preset's dimensions with about 760 codes.
    pub fn small() -> Spec {
        Spec {
            codes: 700,
            labs: 10,
            lab_buckets: 5,
            gap_buckets: 11,
            age_buckets: 18,
            labels: 13,
            demographics: true,
            n_embd: 128,
            n_layer: 2,
            n_head: 4,
            n_ctx: 48,
            visit_groups: false,
            derived_labels: false,
            seen_codes: true,
        }
    }

    /// The paper's dimensions (n_embd 768, 12 layers, n_ctx 48) with about 6,900 codes.
    pub fn paper() -> Spec {
        Spec {
            codes: 6_800,
            labs: 15,
            lab_buckets: 5,
            gap_buckets: 11,
            age_buckets: 18,
            labels: 25,
            demographics: true,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_ctx: 48,
            visit_groups: false,
            derived_labels: false,
            seen_codes: true,
        }
    }

    /// The `small` preset's dimensions with a MEDS ICU export's vocabulary (about 10,500 codes with lab
    /// buckets), for the export-time benchmark.
    pub fn icu() -> Spec {
        Spec {
            codes: 9_900,
            labs: 100,
            lab_buckets: 5,
            ..Spec::small()
        }
    }

    /// The `small` preset's dimensions with about 2,500 codes: the inpatient export-time benchmark
    /// (scripts/bench-export.sh), a model the size of a MEDS ICU data set's after the small-cell rule.
    pub fn dense() -> Spec {
        Spec {
            codes: 2_400,
            labs: 20,
            lab_buckets: 5,
            ..Spec::small()
        }
    }

    pub fn preset(name: &str) -> Option<Spec> {
        match name {
            "dense" => Some(Spec::dense()),
            "tiny" => Some(Spec::tiny()),
            "fixture" => Some(Spec::fixture()),
            "small" => Some(Spec::small()),
            "paper" => Some(Spec::paper()),
            "icu" => Some(Spec::icu()),
            _ => None,
        }
    }
}

/// The synthetic vocabulary of `spec`: gaps, ages, codes and labs, labels, demographics, specials.
pub fn encoding(spec: &Spec) -> Encoding {
    let mut tokens = Vec::new();
    let gap_edges_days: Vec<f64> = [
        0.0, 1.0, 2.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0, 1825.0, 3650.0,
    ]
    .into_iter()
    .take(spec.gap_buckets + 1)
    .collect();
    let age_edges_years: Vec<f64> = (0..=spec.age_buckets).map(|i| i as f64 * 5.0).collect();
    tokens.extend((0..spec.gap_buckets).map(|bucket| Token::Gap { bucket }));
    tokens.extend((0..spec.age_buckets).map(|bucket| Token::Age { bucket }));
    let mut lab_edges = BTreeMap::new();
    for i in 0..spec.codes {
        tokens.push(Token::Code {
            code: format!("ICD9/{:04}", 1000 + i),
        });
    }
    for l in 0..spec.labs {
        let code = format!("LOINC/{}-{}", 2000 + l, l % 10);
        let edges: Vec<f64> = (0..=spec.lab_buckets)
            .map(|k| 10.0 * (l + 1) as f64 + 5.0 * k as f64)
            .collect();
        for bucket in 0..spec.lab_buckets {
            tokens.push(Token::Lab {
                code: code.clone(),
                bucket,
            });
        }
        lab_edges.insert(code, edges);
    }
    let code_vocab_size = tokens.len();
    for l in 0..spec.labels {
        tokens.push(Token::Label {
            name: format!("phenotype_{l}"),
        });
    }
    let mut demographic_categories = Vec::new();
    if spec.demographics {
        let cats: [(DemographicCategory, &[&str]); 3] = [
            (DemographicCategory::Sex, &["F", "M"]),
            (DemographicCategory::Race, &["asian", "black", "white"]),
            (DemographicCategory::BirthYear, &["1940-1949", "1950-1959", "1960-1969"]),
        ];
        for (category, values) in cats {
            demographic_categories.push(LabelCategory {
                name: category.as_str().to_string(),
                first: tokens.len() - code_vocab_size,
                len: values.len(),
            });
            for v in values {
                tokens.push(Token::Demographic {
                    category,
                    value: v.to_string(),
                });
            }
        }
    }
    let label_vocab_size = tokens.len() - code_vocab_size;
    tokens.extend([Token::Start, Token::End, Token::Pad]);
    let mut visit_groups = Vec::new();
    if spec.visit_groups {
        use halo_core::encoding::{GroupVisits, VisitGroup};
        visit_groups.push(VisitGroup {
            name: "gap".into(),
            first: 0,
            len: spec.gap_buckets,
            on: GroupVisits::LaterVisits,
        });
        visit_groups.push(VisitGroup {
            name: "age".into(),
            first: spec.gap_buckets,
            len: spec.age_buckets,
            on: GroupVisits::FirstVisit,
        });
    }
    let first_plain = (spec.gap_buckets + spec.age_buckets) as u32;
    let derived_labels = if spec.derived_labels {
        (0..spec.labels)
            .map(|l| DerivedLabel {
                label: l,
                codes: if l + 1 == spec.labels {
                    Vec::new()
                } else {
                    vec![first_plain + 2 * l as u32, first_plain + 2 * l as u32 + 1]
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    Encoding {
        options: EncodingOptions {
            gaps: spec.gap_buckets > 0,
            labs: spec.labs > 0,
            demographics: spec.demographics,
            code_order: CodeOrder::Lexical,
            order_seed: 0,
            lab_buckets: spec.lab_buckets.max(1),
            max_visits: spec.n_ctx - 2,
            window_stride: 0,
            min_patients: 1,
            visit_size_buckets: 0,
            calendar: false,
            dp: None,
            public_codes: None,
            imply_lab_codes: false,
        },
        tokens,
        code_vocab_size,
        label_vocab_size,
        demographic_categories,
        label_groups: Vec::new(),
        visit_groups,
        derived_labels,
        gap_edges_days,
        gap_quantiles_days: Vec::new(),
        age_edges_years,
        visit_size_edges: Vec::new(),
        calendar_edges_years: Vec::new(),
        lab_edges,
        labels_given: false,
        left_out: Default::default(),
        lab_codes_listed: false,
        lab_codes_implied: false,
        lab_buckets_exclusive: false,
        record_visit_limit: 0,
    }
}

pub fn config(spec: &Spec, enc: &Encoding) -> ModelConfig {
    ModelConfig {
        n_embd: spec.n_embd,
        n_layer: spec.n_layer,
        n_head: spec.n_head,
        n_ctx: spec.n_ctx,
        n_positions: spec.n_ctx + 8,
        layer_norm_epsilon: 1e-5,
        total_vocab_size: enc.vocab_size(),
        code_vocab_size: enc.code_vocab_size,
        label_vocab_size: enc.label_vocab_size,
        special_vocab_size: 3,
        coarse: false,
        seen_codes: spec.seen_codes,
        label_bias: false,
    }
}

fn logit(p: f64) -> f32 {
    (p / (1.0 - p)).ln() as f32
}

/// Output biases giving records like MIMIC-III's: about `codes_per_visit` codes a visit, one gap code on
/// visits after the first, one age code on the first, a few labels, and `visits` visits on average.
pub fn mimic_like_bias(enc: &Encoding, codes_per_visit: f64, visits: f64) -> Vec<f32> {
    let plain = enc
        .tokens
        .iter()
        .filter(|t| matches!(t, Token::Code { .. } | Token::Lab { .. }))
        .count()
        .max(1);
    let gaps = enc
        .tokens
        .iter()
        .filter(|t| matches!(t, Token::Gap { .. }))
        .count()
        .max(1);
    let ages = enc
        .tokens
        .iter()
        .filter(|t| matches!(t, Token::Age { .. }))
        .count()
        .max(1);
    let p_code = (codes_per_visit / plain as f64).min(0.9);
    let mut bias: Vec<f32> = enc
        .tokens
        .iter()
        .map(|t| match t {
            Token::Code { .. } | Token::Lab { .. } => logit(p_code),
            Token::Gap { .. } => logit(0.8 / gaps as f64),
            Token::Age { .. } => logit(0.8 / ages as f64),
            Token::Label { .. } => logit(0.2),
            Token::Demographic { .. } => logit(0.3),
            _ => 0.0,
        })
        .collect();
    bias[enc.end_index()] = logit((1.0 / visits).clamp(0.01, 0.99));
    bias.truncate(enc.end_index() + 1);
    bias
}

/// Scales every non-LayerNorm weight of a checkpoint by `factor` (stronger dependencies between codes
/// than normal(0, 0.02) initialisation gives).
pub fn scale_weights(checkpoint: &Path, factor: f32) {
    use safetensors::tensor::{Dtype, SafeTensors, TensorView};
    let path = checkpoint.join(halo_core::manifest::checkpoint::WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let scale = !name.contains(".ln_") && !name.ends_with("auto2.bias");
        let data: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .flat_map(|c| {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (if scale { v * factor } else { v }).to_le_bytes()
            })
            .collect();
        tensors.push((name.to_string(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
}

/// Writes a random checkpoint under `dir/checkpoint` and exports it to `dir/model`; returns the model
/// directory.
pub fn build_model(dir: &Path, spec: &Spec, seed: u64, bias: Option<&[f32]>, weight_scale: Option<f32>) -> PathBuf {
    let enc = encoding(spec);
    let cfg = config(spec, &enc);
    let ck = dir.join("checkpoint");
    let model = dir.join("model");
    halo_export::write_random_checkpoint(&ck, &cfg, &enc, seed, bias).unwrap();
    if let Some(f) = weight_scale {
        scale_weights(&ck, f);
    }
    halo_export::export(&ck, &model, &halo_export::ExportOptions::default()).unwrap();
    model
}

/// Stores the verify digest of the first `count` records at `seed` in the model's manifest (what
/// `halo export` does).
pub fn add_verify(model: &Path, seed: u64, count: usize) {
    let digest = halo_infer::verify_digest(model, seed, count).unwrap();
    let mut m = halo_core::manifest::Manifest::read(model).unwrap();
    m.verify = Some(digest);
    halo_export::write_manifest(model, &m).unwrap();
}
