//! The vocabulary's parts: what an encoding includes ([`EncodingOptions`]), its entries ([`Token`], and
//! the key each is found under), and the exclusive groups and derived labels laid over them.

use super::*;

/// Order of medical codes inside the vocabulary, which is the autoregressive order within a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CodeOrder {
    /// Seeded shuffle, as the reference implementation does.
    #[default]
    Shuffled,
    /// Most frequent first (ties lexical).
    Frequency,
    /// Lexical by code string.
    Lexical,
}

impl std::str::FromStr for CodeOrder {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<CodeOrder, String> {
        crate::keyword::parse_keyword(
            s,
            "code order",
            &[
                ("shuffled", CodeOrder::Shuffled),
                ("frequency", CodeOrder::Frequency),
                ("lexical", CodeOrder::Lexical),
            ],
        )
    }
}

/// One vocabulary entry, structured so that decoding never parses strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Token {
    /// A medical code, kept exactly as the source spelled it.
    Code {
        code: String,
    },
    /// Days since the previous visit fall in `gap_edges_days[bucket]..gap_edges_days[bucket + 1]`.
    Gap {
        bucket: usize,
    },
    /// Age in years at the first visit falls in `age_edges_years[bucket]..[bucket + 1]`.
    Age {
        bucket: usize,
    },
    /// The visit's kind ([`Visit::visit_type`]); `None`: a type the vocabulary does not keep (absent, or held by
    /// fewer than `min_patients` patients), decoded as no type.
    VisitType {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    /// The visit holds `visit_size_edges[bucket]..visit_size_edges[bucket + 1]` codes (the last bucket: that
    /// many or more). Drawn before the visit's codes, so that the code module knows how many it is producing.
    VisitSize {
        bucket: usize,
    },
    /// The lab's value falls in `lab_edges[code][bucket]..[bucket + 1]`.
    Lab {
        code: String,
        bucket: usize,
    },
    /// The calendar year of the visit before falls in `calendar_edges_years[bucket]..[bucket + 1]` (the first
    /// bucket: before its upper edge; the last: from its lower edge on). Set by the sampler from the dates it
    /// has drawn, never drawn: it tells the model when a record is, so that it ends records and spaces visits
    /// as the data's calendar does (nothing after the data's last visits).
    Calendar {
        bucket: usize,
    },
    /// A phenotype label.
    Label {
        name: String,
    },
    /// A demographic value (the birth year as its decade, `1970-1979`).
    Demographic {
        category: DemographicCategory,
        value: String,
    },
    Start,
    End,
    Pad,
}

/// What the encoding includes; switches for comparisons that do not want a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodingOptions {
    pub gaps: bool,
    pub labs: bool,
    pub demographics: bool,
    pub code_order: CodeOrder,
    pub order_seed: u64,
    /// Number of quantile buckets per lab when the label spec gives no edges.
    pub lab_buckets: usize,
    /// Visits per training window: `n_ctx - 2`. Without windows (`window_stride` 0), a longer record
    /// keeps its most recent `max_visits` visits.
    pub max_visits: usize,
    /// Records longer than `max_visits` are learnt as overlapping windows starting every `window_stride`
    /// visits, each later window's first visit carrying its gap to the visit before (not an age), so that
    /// the model tells a continued record from a new one; a sampler continues a record that fills its
    /// window from its last `max_visits - window_stride` visits. 0: no windows (encodings before them, and
    /// those without gaps, which would have nothing to mark a continuation).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub window_stride: usize,
    /// The small-cell rule: a code, `src:` value, lab or demographic value seen in fewer distinct patients
    /// is left out of the vocabulary, and bucket edges come only from groups of at least this many
    /// patients, so that nothing of a single patient ships in a model directory. Encodings written
    /// before the rule read as 1 (everything kept).
    #[serde(default = "min_patients_of_old_encodings")]
    pub min_patients: usize,
    /// Buckets of the visit-size group (a `SIZE/<bucket>` code on every visit, see
    /// [`Encoding::visit_size_edges`]); 0: none (encodings fitted before it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub visit_size_buckets: usize,
    /// The calendar group ([`Token::Calendar`] on every visit): the year of the visit before, on the first visit
    /// its own year (encodings before manifest format 7: later visits only), in 5-year buckets closed where fewer than `min_patients` patients' records reach. False in encodings
    /// before it, and under differential privacy (its edges would come from the data).
    #[serde(default, skip_serializing_if = "is_false")]
    pub calendar: bool,
    /// Differential privacy of what the vocabulary and the training shares are fitted from (`halo prepare
    /// --dp-epsilon`, `halo_core::privacy::statistics`): noisy counts of patients with bounded contributions,
    /// public bucket edges. Absent: exact counts under the small-cell rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::privacy::statistics::DpStatistics>,
    /// A lab drawn as one: a value stands for its code where every training visit lists the code of each of
    /// its values ([`Encoding::lab_codes_implied`]), and a visit draws at most one of a lab's buckets where the
    /// training visits hardly ever hold two ([`Encoding::lab_buckets_exclusive`]). False in encodings before
    /// it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub imply_lab_codes: bool,
    /// Medical codes given as public input (`--public-codes`): the vocabulary's codes come from this list
    /// instead of the data's counts. Under differential privacy every listed code enters, seen or not, so
    /// that no budget is spent choosing codes; without it, the listed codes that pass the small-cell rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_codes: Option<PublicCodes>,
}

/// A public list of medical codes, one per line as the vocabulary spells them (`condition/201826`,
/// `DIAGNOSIS//ICD//10//E11.9`); blank lines and lines starting with `#` are skipped. `encoding.json` records
/// its digest and size, not its codes (the vocabulary holds the ones kept) nor where it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicCodes {
    /// sha256 of the distinct codes, sorted, one per line.
    pub sha256: String,
    pub count: usize,
    #[serde(skip)]
    pub codes: BTreeSet<String>,
}

/// Two lists are the same list when their digests are (a list read back from `encoding.json` has no codes).
impl PartialEq for PublicCodes {
    fn eq(&self, other: &PublicCodes) -> bool {
        self.sha256 == other.sha256 && self.count == other.count
    }
}

impl PublicCodes {
    /// The list in `text`, read from `path` (named in errors).
    pub fn parse(text: &str, path: &std::path::Path) -> Result<PublicCodes> {
        let mut codes = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim();
            if code.is_empty() || code.starts_with('#') {
                continue;
            }
            if code.chars().any(char::is_whitespace) {
                return Err(Error::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("`{code}`: expected one code per line, without spaces"),
                });
            }
            codes.insert(code.to_string());
        }
        if codes.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no codes (expected one code per line, as the vocabulary spells them, e.g. condition/201826)",
                path.display()
            )));
        }
        let joined: String = codes.iter().map(|c| format!("{c}\n")).collect();
        Ok(PublicCodes {
            sha256: crate::manifest::sha256_hex(joined.as_bytes()),
            count: codes.len(),
            codes,
        })
    }

    /// The list in the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<PublicCodes> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        PublicCodes::parse(&text, path)
    }
}

/// Fields that older encodings lack are left out while zero, so that files written without them keep their
/// bytes (and model digests).
pub(super) fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(super) fn is_false(b: &bool) -> bool {
    !*b
}

/// Width of the calendar group's buckets, in years.
pub const CALENDAR_BUCKET_YEARS: f64 = 5.0;

/// Default number of visit-size buckets: none. Measured on dense visits (docs/records.md, "Dense visits"),
/// the group did not shrink the within-visit drift that the sampling calibration closes, so it stays a switch
/// (`halo train --visit-size-buckets 10`).
pub const DEFAULT_VISIT_SIZE_BUCKETS: usize = 0;

/// Default minimum number of patients behind anything the vocabulary or a bucket edge carries.
pub const DEFAULT_MIN_PATIENTS: usize = 10;
/// The share of the training visits' measured labs holding two different values in the visit below which a
/// visit draws at most one bucket of a lab ([`Encoding::lab_buckets_exclusive`]).
pub const LAB_VALUED_TWICE_SHARE: f64 = 0.01;

fn min_patients_of_old_encodings() -> usize {
    1
}

impl Default for EncodingOptions {
    fn default() -> Self {
        EncodingOptions {
            gaps: true,
            labs: true,
            demographics: true,
            code_order: CodeOrder::Shuffled,
            order_seed: 0,
            lab_buckets: 5,
            max_visits: 46,
            window_stride: 0,
            min_patients: DEFAULT_MIN_PATIENTS,
            visit_size_buckets: DEFAULT_VISIT_SIZE_BUCKETS,
            calendar: false,
            dp: None,
            public_codes: None,
            imply_lab_codes: false,
        }
    }
}

impl EncodingOptions {
    /// The first visit encoded of a record of `len` visits: without windows a longer record keeps its most
    /// recent `max_visits` visits (and the first of them takes the age); with windows every visit is encoded.
    pub fn first_encoded_visit(&self, len: usize) -> usize {
        match self.window_stride {
            0 => len.saturating_sub(self.max_visits),
            _ => 0,
        }
    }
}

/// Default gap bucket edges in days; the last bucket is closed by the largest gap seen in training.
pub const DEFAULT_GAP_EDGES_DAYS: [f64; 12] = [0.0, 1.0, 2.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0, 1825.0];
/// Most segments of a gap bucket's within-bucket distribution ([`Encoding::gap_quantiles_days`]).
pub const GAP_SEGMENTS: usize = 10;
/// Default age bucket width in years for the age at the first visit.
pub const AGE_BUCKET_YEARS: f64 = 5.0;

/// A contiguous run of label codes (relative to the first label code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelCategory {
    pub name: String,
    pub first: usize,
    pub len: usize,
}

/// A group of medical codes of which a visit holds exactly one where the group applies and none elsewhere
/// (the gap since the previous visit, the age at the first visit): samplers draw it as one categorical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitGroup {
    pub name: String,
    /// Vocabulary index of the group's first code; its codes are contiguous.
    pub first: usize,
    pub len: usize,
    pub on: GroupVisits,
}

/// Which visits hold a [`VisitGroup`]'s one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupVisits {
    FirstVisit,
    LaterVisits,
    EveryVisit,
}

impl VisitGroup {
    /// Names of the groups fitting makes: gap buckets (later visits), age buckets (the first visit), visit
    /// types (every visit).
    pub const GAP: &'static str = "gap";
    pub const AGE: &'static str = "age";
    /// The visit's type (every visit), [`Token::VisitType`].
    pub const VISIT_TYPE: &'static str = "visit_type";
    /// The visit's size bucket (every visit).
    pub const SIZE: &'static str = "size";
    /// The calendar year of the visit before, [`Token::Calendar`]: on later visits set by the sampler from the dates
    /// it draws, not drawn; on the first visit (encodings of manifest format 7 on) the visit's own year, drawn by
    /// the model, and the first visit's date is drawn inside it.
    pub const CALENDAR: &'static str = "calendar";

    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.len
    }

    /// Whether the group's one code belongs in visit `t` (0 = the first visit).
    pub fn applies_to(&self, t: usize) -> bool {
        match self.on {
            GroupVisits::FirstVisit => t == 0,
            GroupVisits::LaterVisits => t > 0,
            GroupVisits::EveryVisit => true,
        }
    }
}

/// A label set by codes (see [`Encoding::derived_labels`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedLabel {
    /// Label-local index of the label code.
    pub label: usize,
    /// Vocabulary indices of the medical codes that set it, ascending.
    pub codes: Vec<u32>,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Code { code } => write!(f, "{code}"),
            Token::Gap { bucket } => write!(f, "GAP/{bucket}"),
            Token::Age { bucket } => write!(f, "AGE/{bucket}"),
            Token::VisitType { value: Some(value) } => write!(f, "VISIT_TYPE/{value}"),
            Token::VisitType { value: None } => write!(f, "VISIT_TYPE/<other>"),
            Token::VisitSize { bucket } => write!(f, "SIZE/{bucket}"),
            Token::Calendar { bucket } => write!(f, "YEAR/{bucket}"),
            Token::Lab { code, bucket } => write!(f, "LAB/{code}/q{bucket}"),
            Token::Label { name } => write!(f, "{name}"),
            Token::Demographic { category, value } => write!(f, "{}/{value}", category.code_prefix()),
            Token::Start => write!(f, "<start>"),
            Token::End => write!(f, "<end>"),
            Token::Pad => write!(f, "<pad>"),
        }
    }
}

/// Key under which a token is found in `Encoding::index`: medical codes by their own string, so that a
/// record's codes are looked up directly; everything else by its kind-prefixed display form.
pub fn token_key(t: &Token) -> String {
    match t {
        Token::Code { code } => code.clone(),
        other => format!("\u{1}{other}"),
    }
}
