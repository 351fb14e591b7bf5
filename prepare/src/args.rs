//! The command line of `halo prepare` (and `halo-prepare`), and the argument groups it shares with
//! `halo train`: how records are read ([`DataArgs`]) and encoded ([`EncodingArgs`]).

use crate::PrepareArgs;
use anyhow::Result;
use clap::Args;
use halo_core::config::Preset;
use halo_core::encoding::{CodeOrder, EncodingOptions, PublicCodes};
use halo_core::privacy::statistics::DpStatistics;
use halo_core::{Format, ReadOptions};
use std::path::PathBuf;

#[derive(Args)]
pub struct DataArgs {
    /// Input format: omop (CDM 5.4 CSV folder), meds (folder with data/*.parquet), jsonl. Detected when omitted.
    #[arg(long)]
    pub format: Option<Format>,
    /// MEDS: events within this many seconds of a visit's first event join it [default: same calendar day].
    #[arg(long)]
    pub meds_visit_window: Option<i64>,
    /// Years a visit or birth may fall in, FROM..TO; visits and births outside are dropped and counted (year
    /// 9999 is a data error, not a visit). The default admits MIMIC-IV's shifted dates.
    #[arg(long, value_name = "FROM..TO", default_value = "1800..2300", value_parser = parse_years)]
    pub plausible_years: (i32, i32),
    /// Largest magnitude of a lab value; larger ones are dropped and counted.
    #[arg(long, value_name = "X", default_value_t = 1e12, value_parser = parse_positive)]
    pub max_lab_value: f64,
}

impl DataArgs {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            meds_visit_window_seconds: self.meds_visit_window,
            bounds: halo_core::bounds::Bounds {
                first_year: self.plausible_years.0,
                last_year: self.plausible_years.1,
                max_abs_lab_value: self.max_lab_value,
            },
        }
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("`{s}`: expected a positive number"))
}

fn parse_years(s: &str) -> Result<(i32, i32), String> {
    halo_core::bounds::Bounds::parse_years(s).ok_or_else(|| format!("`{s}`: expected FROM..TO, e.g. 1800..2300"))
}

/// How records become the model's vocabulary and sequences: what `halo prepare` and `halo train --data`
/// share.
#[derive(Args)]
pub struct EncodingArgs {
    /// Phenotype label spec: a JSON file ({"labels": {name: [codes or prefix*]}}, docs/label-specs.md) or a
    /// shipped one by name: ccs-icd9, ccs-icd10 (the 25 acute-care phenotypes of HALO's MIMIC-III experiments
    /// by HCUP CCS); default: chronic conditions for OMOP.
    /// Ignored when the records carry their own labels.
    #[arg(long)]
    pub label_spec: Option<PathBuf>,
    /// Given split (CSV `id,split` or JSON {id: split}); overrides the records' own and the seeded split.
    #[arg(long)]
    pub split_file: Option<PathBuf>,
    /// Leave out the gap (and age) bucket codes.
    #[arg(long)]
    pub no_gaps: bool,
    /// Leave out the lab value bucket codes.
    #[arg(long)]
    pub no_labs: bool,
    /// Leave out the demographic label codes.
    #[arg(long)]
    pub no_demographics: bool,
    /// Order of codes in the vocabulary (the order codes are generated within a visit).
    #[arg(long, default_value = "shuffled")]
    pub code_order: CodeOrder,
    /// Quantile buckets per lab value.
    #[arg(long, default_value_t = 5)]
    pub lab_buckets: usize,
    /// Keep a lab code's own token in a visit beside the buckets of its values, as encodings did before
    /// (two draws the sampler can part: the demo's model drew 0.6 lab codes a visit without a value). By
    /// default, where every visit lists the code of each of its values (the OMOP and MEDS readers), a value
    /// stands for its code.
    #[arg(long)]
    pub lab_code_tokens: bool,
    /// Buckets of the visit's size (its number of codes), drawn first in each visit so that the code module
    /// knows how many codes it is producing; 0 (the default) leaves the size group out. On dense test visits it
    /// did not reduce the drift that `halo export`'s calibration closes (docs/records.md, "Dense visits").
    #[arg(long, default_value_t = halo_core::encoding::DEFAULT_VISIT_SIZE_BUCKETS)]
    pub visit_size_buckets: usize,
    /// Leave out the calendar group: the year of the visit before, on every later visit, which the sampler sets
    /// from the dates it draws so that the model ends records and spaces visits as the data's calendar does
    /// (without it on the Synthea demo, 43% of synthetic records ran past the data's last visit). Off under
    /// --dp-epsilon (its edges come from the data)
    #[arg(long)]
    pub no_calendar: bool,
    /// The small-cell rule: codes, source values, labs and demographic values seen in fewer distinct
    /// patients are left out of the vocabulary, and bucket edges come from groups of at least this many
    /// patients, so that nothing of one patient ships in the model. `halo export` refuses models trained
    /// with fewer than 5 unless given --allow-small-cells.
    #[arg(long, default_value_t = halo_core::encoding::DEFAULT_MIN_PATIENTS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub min_patients: usize,
    /// Learn records longer than the context in windows of n_ctx - 2 visits, one every half window, and let
    /// the sampler continue a record that fills its window (up to a length at least --min-patients training
    /// records reach). Needs gaps. On the Synthea demo: visits per record -12.6% -> +6.1% against the data,
    /// but codes per visit -3.6% -> -8.2%; off by default.
    #[arg(long, conflicts_with = "no_gaps")]
    pub windows: bool,
    /// A public list of medical codes (one per line as the vocabulary spells them, e.g. condition/201826 or
    /// DIAGNOSIS//ICD//10//E11.9; `#` comments): the vocabulary's codes come from it, not from the data's
    /// counts. Under --dp-epsilon every listed code enters and no budget is spent choosing codes (on few
    /// patients the noisy counts keep only the commonest); without it, the listed codes that pass
    /// --min-patients. docs/dp-sgd.md
    #[arg(long, value_name = "FILE")]
    pub public_codes: Option<PathBuf>,
    /// Under differential privacy (`--dp-epsilon`): the share of the run's epsilon that the data's statistics
    /// (the vocabulary's noisy counts, the calibration's gap and visit-type shares) spend; DP-SGD gets the rest.
    #[arg(long, value_name = "SHARE", default_value_t = halo_core::privacy::statistics::DEFAULT_EPSILON_SHARE, value_parser = parse_share)]
    pub dp_statistics_share: f64,
    /// Under differential privacy: each patient is counted for at most this many vocabulary entries (its
    /// demographic values and visit types, then a seeded choice of its codes), which bounds its effect on the
    /// counts (L2 sensitivity sqrt(N)).
    #[arg(long, value_name = "N", default_value_t = halo_core::privacy::statistics::DEFAULT_MAX_CODES_PER_PATIENT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub dp_max_codes_per_patient: usize,
    /// Under differential privacy: the gap and visit-type shares and the mean codes per visit count at most this
    /// many visits of each patient, spread over its record (L2 sensitivity N).
    #[arg(long, value_name = "N", default_value_t = halo_core::privacy::statistics::DEFAULT_MAX_VISITS_PER_PATIENT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub dp_max_visits_per_patient: usize,
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0 && *x < 1.0)
        .ok_or_else(|| format!("`{s}`: expected a share between 0 and 1, e.g. 0.1"))
}

impl EncodingArgs {
    /// The encoding options asked for (the context's visits and the window stride are set when the
    /// model's context is known, `halo_train::prepare::encoding_options`).
    pub fn options(&self, seed: u64) -> Result<EncodingOptions> {
        let public_codes = match &self.public_codes {
            Some(path) => Some(PublicCodes::read(path)?),
            None => None,
        };
        Ok(EncodingOptions {
            gaps: !self.no_gaps,
            labs: !self.no_labs,
            demographics: !self.no_demographics,
            code_order: self.code_order,
            order_seed: seed,
            lab_buckets: self.lab_buckets,
            max_visits: 46,
            // Any stride asks for windows; the context sets it to half a window.
            window_stride: usize::from(self.windows),
            min_patients: self.min_patients,
            visit_size_buckets: self.visit_size_buckets,
            calendar: !self.no_calendar,
            dp: None,
            public_codes,
            imply_lab_codes: !self.lab_code_tokens,
        })
    }

    /// The data's statistics under differential privacy for a run of `epsilon` at `delta` (`halo prepare
    /// --dp-epsilon`, `halo train --dp-epsilon` from --data): this group's share and bounds, the noise seeded
    /// by `seed`. Set as `EncodingOptions::dp`.
    pub fn dp_statistics(&self, epsilon: f64, delta: f64, seed: u64) -> DpStatistics {
        DpStatistics {
            epsilon_share: self.dp_statistics_share * epsilon,
            delta,
            max_codes_per_patient: self.dp_max_codes_per_patient,
            max_visits_per_patient: self.dp_max_visits_per_patient,
            seed,
        }
    }
}

#[derive(Args)]
pub struct PrepareCmd {
    /// Records to prepare: an OMOP CDM CSV folder, a MEDS folder, or a JSONL file.
    #[arg(long)]
    pub data: PathBuf,
    /// Corpus folder to write (must be new or empty).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    encoding: EncodingArgs,
    /// The model the corpus is for: its context sets how many visits a sequence holds.
    #[arg(long, default_value = "small")]
    preset: Preset,
    /// Override the preset's context (n_ctx - 2 visits a sequence); `halo train --corpus` must ask for the same.
    #[arg(long)]
    n_ctx: Option<usize>,
    /// Seed of the split and of the shuffled code order (`halo train --seed` of a run from --data).
    #[arg(long, default_value_t = halo_core::split::DEFAULT_SEED)]
    seed: u64,
    /// Print the stages' seconds, events per second and peak memory as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Fit the vocabulary and the calibration's shares with differential privacy, spending
    /// --dp-statistics-share of this epsilon (docs/privacy.md); the corpus records what it spent in
    /// privacy.json, and `halo train --corpus` with DP-SGD composes on top of it.
    #[arg(long, value_name = "E", value_parser = parse_positive)]
    dp_epsilon: Option<f64>,
    /// The delta of --dp-epsilon (the whole run's); at most 1 / the number of records.
    #[arg(long, value_name = "D", default_value_t = DEFAULT_DP_DELTA, value_parser = parse_positive)]
    dp_delta: f64,
}

/// Default delta of a run with differential privacy.
pub const DEFAULT_DP_DELTA: f64 = 1e-5;

/// Runs `halo prepare` in this process.
pub fn run(cmd: PrepareCmd) -> Result<()> {
    let n_ctx = cmd.n_ctx.unwrap_or(cmd.preset.settings().n_ctx);
    anyhow::ensure!(
        n_ctx >= 3,
        "--n-ctx must be at least 3 (one visit besides the start and label rows)"
    );
    let mut options = cmd.encoding.options(cmd.seed)?;
    options.dp = cmd
        .dp_epsilon
        .map(|epsilon| cmd.encoding.dp_statistics(epsilon, cmd.dp_delta, cmd.seed));
    let args = PrepareArgs {
        data: cmd.data,
        format: cmd.data_args.format,
        read: cmd.data_args.read_options(),
        label_spec: cmd.encoding.label_spec.clone(),
        split_file: cmd.encoding.split_file.clone(),
        seed: cmd.seed,
        encoding: crate::encoding_options(&options, n_ctx),
        quiet: false,
    };
    let times = crate::prepare(&args, &cmd.out)?;
    eprintln!("halo prepare: corpus {}", cmd.out.display());
    if cmd.json {
        println!("{}", serde_json::to_string(&times)?);
    }
    Ok(())
}
