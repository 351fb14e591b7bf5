//! Fitting an encoding on records: the vocabulary under the small-cell rule, bucket edges from the training
//! split, the exclusive groups (time codes, partitioning labels).

use super::counts::{DpKey, FitCounts, LabelCounts, TrainCounts};
use super::time_edges::TimeEdges;
use super::*;
use crate::privacy::statistics::NoiseStream;

impl Encoding {
    /// Fits the vocabulary on all patients (codes held by at least `options.min_patients` of them) and the
    /// bucket edges on the training patients.
    pub fn fit(
        all: &[Patient],
        train: &[&Patient],
        spec: Option<&LabelSpec>,
        options: EncodingOptions,
    ) -> Result<Encoding> {
        let mut counts = FitCounts::default();
        for p in all {
            counts.observe(p, &options)?;
        }
        for p in train {
            counts.observe_train(p, &options);
        }
        counts.finish(spec, options, &mut |each| {
            for p in train {
                each(p);
            }
            Ok(())
        })
    }

    /// [`Encoding::fit`] over streamed records: one pass counts, a second (only with
    /// [`EncodingOptions::visit_size_buckets`]) sizes the visits. The same encoding as `fit` on the same
    /// patients in the same order.
    pub fn fit_records(
        records: &mut crate::source::Records,
        in_train: &dyn Fn(&Patient) -> bool,
        spec: Option<&LabelSpec>,
        options: EncodingOptions,
    ) -> Result<Encoding> {
        let mut counts = FitCounts::default();
        records.pass(&mut |p| {
            counts.observe(p, &options)?;
            if in_train(p) {
                counts.observe_train(p, &options);
            }
            Ok(())
        })?;
        counts.finish(spec, options, &mut |each| {
            records.pass(&mut |p| {
                if in_train(p) {
                    each(p);
                }
                Ok(())
            })
        })
    }
}

/// Calls its argument on every training patient again, in the order first observed.
type TrainPass<'a> = &'a mut dyn FnMut(&mut dyn FnMut(&Patient)) -> Result<()>;

impl FitCounts {
    /// Under differential privacy: every count the vocabulary is decided on becomes its noisy count (0 below
    /// the threshold); returns the birth decades' noisy counts.
    fn take_noisy_counts(&mut self, options: &EncodingOptions, k: usize) -> Result<BTreeMap<i32, usize>> {
        let noisy = noisy_vocabulary(&self.dp_keys, options, k)?;
        let count = |key: DpKey| noisy.get(&key).copied().unwrap_or(0);
        match &options.public_codes {
            // Every listed code enters, seen or not, with the same count: nothing about the data decides.
            Some(public) => {
                self.codes = public.codes.iter().map(|c| (c.clone(), (k, k))).collect();
            }
            None => {
                for (code, n) in self.codes.iter_mut() {
                    let c = count(DpKey::Code(code.clone()));
                    *n = (c, c);
                }
            }
        }
        for (ty, n) in self.visit_types.iter_mut() {
            *n = count(DpKey::VisitType(ty.clone()));
        }
        // Whether some visit has no (kept) type, and which types training visits have, are facts one
        // patient can change: a visit may always be of "another" type, and every kept type counts as seen.
        self.untyped_visit = true;
        self.train.visit_types = self.visit_types.keys().cloned().collect();
        for (category, values) in self.demographics.iter_mut() {
            for (value, n) in values.iter_mut() {
                *n = count(DpKey::Demographic(*category, value.clone()));
            }
        }
        Ok(noisy
            .iter()
            .filter_map(|(key, &n)| match key {
                DpKey::BirthDecade(first) if n > 0 => Some((*first, n)),
                _ => None,
            })
            .collect())
    }

    /// Without differential privacy, a public code list keeps only its own codes (under DP it replaced the
    /// counts already, `take_noisy_counts`); returns how many of the data's codes it left out.
    fn drop_unlisted(&mut self, options: &EncodingOptions) -> usize {
        match (&options.public_codes, &options.dp) {
            (Some(public), None) => {
                let before = self.codes.len();
                self.codes.retain(|code, _| public.codes.contains(code));
                before - self.codes.len()
            }
            _ => 0,
        }
    }

    /// The encoding; `train_pass` calls its argument on every training patient again (in the order
    /// observed), needed only for the visit sizes.
    fn finish(
        mut self,
        spec: Option<&LabelSpec>,
        options: EncodingOptions,
        train_pass: TrainPass<'_>,
    ) -> Result<Encoding> {
        let k = options.min_patients.max(1);
        let mut left_out = LeftOut::default();
        let noisy_decades = match options.dp {
            Some(_) => Some(self.take_noisy_counts(&options, k)?),
            None => None,
        };
        left_out.not_listed = self.drop_unlisted(&options);
        let FitCounts {
            codes,
            visit_types,
            untyped_visit,
            labels,
            demographics,
            birth_years,
            train: mut t,
            dp_keys: _,
        } = self;
        let edges = TimeEdges::fit(&mut t, spec, &options, k);
        let (lab_edges, rare_labs) = match options.dp {
            // Lab edges from the data are quantiles of patients' values: under DP only the spec's (public) are
            // used, and labs without them are left out.
            Some(_) => (spec.map(|s| s.lab_edges.clone()).unwrap_or_default(), 0),
            None => fit_lab_edges(std::mem::take(&mut t.labs), spec, &options, k),
        };
        left_out.labs = rare_labs;
        let (medical, rare_codes) = medical_tokens(&codes, &lab_edges, &options, k);
        left_out.codes = rare_codes;
        let (lab_codes_listed, lab_codes_implied, lab_buckets_exclusive) = t.lab_facts(&options);
        let labs = LabEncoding::of(&options, &lab_edges, lab_codes_implied);
        let visit_size_edges = match options.visit_size_buckets {
            0 => Vec::new(),
            buckets => fit_visit_size_edges(train_pass, &medical, labs, &options, buckets, k)?,
        };
        let (type_codes, rare_types) = visit_type_tokens(&visit_types, untyped_visit, &t.visit_types, k);
        left_out.visit_types = rare_types;
        let groups = visit_groups(&edges, &t, &options, type_codes, &visit_size_edges);
        let VisitGroups {
            mut tokens,
            groups: visit_groups,
        } = groups;
        tokens.extend(medical);
        let code_vocab_size = tokens.len();

        // Labels: given in the records, or from the spec; then the demographic categories.
        let labels_given = labels.given;
        let (label_names, label_groups) = label_names(labels, spec, &options)?;
        tokens.extend(label_names.into_iter().map(|name| Token::Label { name }));
        let demographic_categories = match options.demographics {
            true => demographic_tokens(
                demographics,
                &birth_years,
                noisy_decades,
                k,
                code_vocab_size,
                &mut tokens,
                &mut left_out,
            ),
            false => Vec::new(),
        };
        let derived_labels = match spec {
            Some(spec) if !labels_given => derived_labels(&tokens, code_vocab_size, spec, lab_codes_implied),
            _ => Vec::new(),
        };
        let label_vocab_size = tokens.len() - code_vocab_size;
        tokens.extend([Token::Start, Token::End, Token::Pad]);
        let record_visit_limit = record_visit_limit(std::mem::take(&mut t.lengths), &options);
        if options.dp.is_some() {
            // How many codes, labs or values were left out counts distinct values of the data, which one
            // patient can change by up to its number of codes: not released under DP.
            left_out = LeftOut::default();
        }
        Ok(Encoding {
            options,
            tokens,
            code_vocab_size,
            label_vocab_size,
            demographic_categories,
            label_groups,
            visit_groups,
            derived_labels,
            gap_edges_days: edges.gap_days,
            gap_quantiles_days: edges.gap_quantiles,
            age_edges_years: edges.age_years,
            calendar_edges_years: edges.calendar_years,
            visit_size_edges,
            lab_edges,
            labels_given,
            left_out,
            lab_codes_listed,
            lab_codes_implied,
            lab_buckets_exclusive,
            record_visit_limit,
        })
    }
}

/// The label names in vocabulary order and the exclusive label groups: the records' own labels, or the spec's.
fn label_names(
    labels: LabelCounts,
    spec: Option<&LabelSpec>,
    options: &EncodingOptions,
) -> Result<(Vec<String>, Vec<LabelCategory>)> {
    Ok(match labels.given {
        true => labels.ordered_names(options.dp.is_none())?,
        false => (
            spec.map(|s| s.labels.keys().cloned().collect()).unwrap_or_default(),
            Vec::new(),
        ),
    })
}

/// The groups that open the vocabulary, in the order a visit draws them: the calendar first, so that everything
/// drawn after it (the gap first) knows when the visit is; then gap, age (first visit only), the visit's type
/// and size. A group is exclusive only when the training records always have it.
fn visit_groups(
    edges: &TimeEdges,
    t: &TrainCounts,
    options: &EncodingOptions,
    type_codes: Vec<Token>,
    visit_size_edges: &[f64],
) -> VisitGroups {
    // One token per bucket between consecutive edges.
    fn buckets(edges: &[f64], token: fn(usize) -> Token) -> Vec<Token> {
        (0..edges.len().saturating_sub(1)).map(token).collect()
    }
    let mut groups = VisitGroups::default();
    if !edges.calendar_years.is_empty() {
        let codes = buckets(&edges.calendar_years, |bucket| Token::Calendar { bucket });
        // On the first visit too: where a record starts in time is drawn, not left to the birth decade and
        // the age bucket (with them alone, 40% of the demo's synthetic records ran past the data's end).
        groups.add(VisitGroup::CALENDAR, GroupVisits::EveryVisit, true, codes);
    }
    if options.gaps && edges.any_gap {
        let codes = buckets(&edges.gap_days, |bucket| Token::Gap { bucket });
        groups.add(VisitGroup::GAP, GroupVisits::LaterVisits, t.always_gap, codes);
    }
    if options.gaps && edges.any_age {
        let codes = buckets(&edges.age_years, |bucket| Token::Age { bucket });
        groups.add(VisitGroup::AGE, GroupVisits::FirstVisit, t.always_age, codes);
    }
    if !type_codes.is_empty() {
        groups.add(VisitGroup::VISIT_TYPE, GroupVisits::EveryVisit, true, type_codes);
    }
    if visit_size_edges.len() >= 2 {
        let codes = buckets(visit_size_edges, |bucket| Token::VisitSize { bucket });
        groups.add(VisitGroup::SIZE, GroupVisits::EveryVisit, true, codes);
    }
    groups
}

/// The tokens of the groups that open the vocabulary, with the exclusive ones listed.
#[derive(Default)]
struct VisitGroups {
    tokens: Vec<Token>,
    groups: Vec<VisitGroup>,
}

impl VisitGroups {
    /// Adds a group's codes; `exclusive` when every visit it applies to holds exactly one of them.
    fn add(&mut self, name: &str, on: GroupVisits, exclusive: bool, codes: Vec<Token>) {
        if exclusive {
            self.groups.push(VisitGroup {
                name: name.into(),
                first: self.tokens.len(),
                len: codes.len(),
                on,
            });
        }
        self.tokens.extend(codes);
    }
}

/// The demographic categories' values held by at least `k` patients, appended to `tokens` (label-local
/// positions), and how many values were left out.
fn demographic_tokens(
    mut counts: BTreeMap<DemographicCategory, BTreeMap<String, usize>>,
    birth_years: &[i32],
    noisy_decades: Option<BTreeMap<i32, usize>>,
    k: usize,
    code_vocab_size: usize,
    tokens: &mut Vec<Token>,
    left_out: &mut LeftOut,
) -> Vec<LabelCategory> {
    let mut categories = Vec::new();
    for category in DemographicCategory::ALL {
        let counts = match category {
            DemographicCategory::BirthYear => match &noisy_decades {
                Some(decades) => decade_values(decades.clone(), k),
                None => birth_year_values(birth_years.iter().copied(), k),
            },
            _ => counts.remove(&category).unwrap_or_default(),
        };
        left_out.demographic_values += counts.values().filter(|&&n| n < k).count();
        let values: BTreeSet<String> = counts.into_iter().filter(|(_, n)| *n >= k).map(|(v, _)| v).collect();
        if values.is_empty() {
            continue;
        }
        categories.push(LabelCategory {
            name: category.as_str().to_string(),
            first: tokens.len() - code_vocab_size,
            len: values.len(),
        });
        tokens.extend(values.into_iter().map(|value| Token::Demographic { category, value }));
    }
    categories
}

/// Lab bucket edges (from the spec, else quantiles of the training values) of the labs that at least `k`
/// training patients have, and how many labs were left out.
fn fit_lab_edges(
    labs: BTreeMap<String, LabSample>,
    spec: Option<&LabelSpec>,
    options: &EncodingOptions,
    k: usize,
) -> (BTreeMap<String, Vec<f64>>, usize) {
    let mut rare = 0;
    let mut lab_edges = BTreeMap::new();
    for (code, mut sample) in labs {
        if sample.patients() < k {
            rare += 1;
            continue;
        }
        let edges = match spec.and_then(|s| s.lab_edges.get(&code)) {
            Some(e) => e.clone(),
            None => sample.edges(options.lab_buckets.max(1), k),
        };
        lab_edges.insert(code, edges);
    }
    if let Some(spec) = spec {
        for (code, edges) in &spec.lab_edges {
            lab_edges.entry(code.clone()).or_insert_with(|| edges.clone());
        }
    }
    (lab_edges, rare)
}

/// The medical codes (held by at least `k` patients) and lab buckets, in the vocabulary's code order, and
/// how many codes were left out.
fn medical_tokens(
    codes: &HashMap<String, (usize, usize)>,
    lab_edges: &BTreeMap<String, Vec<f64>>,
    options: &EncodingOptions,
    k: usize,
) -> (Vec<Token>, usize) {
    let rare = codes.values().filter(|(_, n)| *n < k).count();
    let mut medical: Vec<Token> = codes
        .iter()
        .filter(|(_, (_, n))| *n >= k)
        .map(|(c, _)| Token::Code { code: c.to_string() })
        .collect();
    for (code, edges) in lab_edges {
        for bucket in 0..edges.len() - 1 {
            medical.push(Token::Lab {
                code: code.clone(),
                bucket,
            });
        }
    }
    let key = |t: &Token| t.to_string();
    medical.sort_by_key(key);
    match options.code_order {
        CodeOrder::Lexical => {}
        CodeOrder::Frequency => {
            let count = |t: &Token| match t {
                Token::Code { code } | Token::Lab { code, .. } => codes.get(code.as_str()).map_or(0, |c| c.0),
                _ => 0,
            };
            medical.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.to_string().cmp(&b.to_string())));
        }
        CodeOrder::Shuffled => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.order_seed);
            medical.shuffle(&mut rng);
        }
    }
    (medical, rare)
}

/// Labels from the spec are a function of codes: per label, the vocabulary codes that set it (with
/// `implied` lab codes, the buckets of a lab code that sets it too, each standing for its code).
fn derived_labels(tokens: &[Token], code_vocab_size: usize, spec: &LabelSpec, implied: bool) -> Vec<DerivedLabel> {
    (code_vocab_size..tokens.len())
        .filter_map(|i| match &tokens[i] {
            Token::Label { name } => Some((i - code_vocab_size, name)),
            _ => None,
        })
        .map(|(label, name)| DerivedLabel {
            label,
            codes: (0..code_vocab_size)
                .filter(|&j| match &tokens[j] {
                    Token::Code { code } => spec.code_sets(name, code),
                    Token::Lab { code, .. } => implied && spec.code_sets(name, code),
                    _ => false,
                })
                .map(|j| j as u32)
                .collect(),
        })
        .collect()
}

/// The visit type group's tokens (empty when no training visit has a kept type) and how many types the
/// small-cell rule left out. A type is kept when at least `k` of all patients have a visit of it (as codes
/// are); `VISIT_TYPE/<other>` is added when some visit has no kept type (no type, or a rare one), so that
/// every visit holds exactly one token of the group and a rare type is never named.
fn visit_type_tokens(
    patients_with: &BTreeMap<String, usize>,
    untyped_visit: bool,
    training_types: &BTreeSet<String>,
    k: usize,
) -> (Vec<Token>, usize) {
    let rare = patients_with.values().filter(|&&n| n < k).count();
    let kept: BTreeSet<&str> = patients_with
        .iter()
        .filter(|(_, n)| **n >= k)
        .map(|(t, _)| t.as_str())
        .collect();
    if !training_types.iter().any(|t| kept.contains(t.as_str())) {
        return (Vec::new(), rare);
    }
    // A visit without a kept type: one without a type, or of a rare type.
    let other = untyped_visit || kept.len() < patients_with.len();
    let mut tokens: Vec<Token> = kept
        .into_iter()
        .map(|t| Token::VisitType {
            value: Some(t.to_string()),
        })
        .collect();
    if other {
        tokens.push(Token::VisitType { value: None });
    }
    (tokens, rare)
}

/// [`Encoding::visit_size_edges`]: quantiles of the sizes of the training visits that are encoded (each
/// visit's own codes as `medical` and `lab_edges` encode them), top-coded at the `k`-th patient's smallest and
/// largest visit like the lab edges, so that no edge describes fewer than `k` patients. Empty when no
/// training visit is encoded.
fn fit_visit_size_edges(
    train_pass: TrainPass<'_>,
    medical: &[Token],
    labs: Option<LabEncoding<'_>>,
    options: &EncodingOptions,
    buckets: usize,
    k: usize,
) -> Result<Vec<f64>> {
    let index: HashMap<String, u32> = medical
        .iter()
        .enumerate()
        .map(|(i, t)| (token_key(t), i as u32))
        .collect();
    let mut sizes = LabSample::default();
    let mut unknown = 0;
    train_pass(&mut |p| {
        let mut range: Option<(f64, f64)> = None;
        for visit in &p.visits[options.first_encoded_visit(p.visits.len())..] {
            let mut codes = BTreeSet::new();
            visit_codes(visit, &index, labs, &mut codes, &mut unknown);
            let n = codes.len() as f64;
            sizes.values.push(n);
            range = Some(range.map_or((n, n), |(lo, hi)| (lo.min(n), hi.max(n))));
        }
        if let Some((lo, hi)) = range {
            sizes.patient_lowest.push(lo);
            sizes.patient_highest.push(hi);
        }
    })?;
    if sizes.values.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sizes.edges(buckets, k))
}

/// The birth-year values of a vocabulary with their patient counts: decades (`1970-1979`), except that rare
/// decades (fewer than `k` patients) at either end of the years seen are merged with their neighbours
/// towards the middle into one wider value (`1900-1939`) until it holds `k` patients, so that the oldest and
/// youngest patients keep a value instead of being left out. A rare decade with an empty decade between it
/// and the rest (one birth in 2090 against births up to 2019) is not merged: it would stretch a value over
/// decades nobody was born in; it stays rare and is left out, as are rare decades in the middle.
fn birth_year_values(years: impl Iterator<Item = i32>, k: usize) -> BTreeMap<String, usize> {
    let mut decades: BTreeMap<i32, usize> = BTreeMap::new();
    for year in years {
        *decades.entry(BirthDecade::of_year(year).first_year).or_default() += 1;
    }
    decade_values(decades, k)
}

/// [`birth_year_values`] from the patients per decade (by its first year).
fn decade_values(decades: BTreeMap<i32, usize>, k: usize) -> BTreeMap<String, usize> {
    // (first year, last year, patients), oldest first.
    let mut groups: Vec<(i32, i32, usize)> = decades.into_iter().map(|(y, n)| (y, y + 9, n)).collect();
    merge_rare_end(&mut groups, k, |older, younger| younger.0 == older.1 + 1);
    groups.reverse();
    merge_rare_end(&mut groups, k, |younger, older| younger.0 == older.1 + 1);
    groups
        .into_iter()
        .map(|(first, last, n)| (BirthDecade::years_value(first, last), n))
        .collect()
}

/// Merges the rare groups at the front of `groups` into the next one while `adjacent(front, next)`, until
/// the front group holds `k` patients. A rare front group that is not adjacent to the next is passed over.
fn merge_rare_end(
    groups: &mut Vec<(i32, i32, usize)>,
    k: usize,
    adjacent: impl Fn(&(i32, i32, usize), &(i32, i32, usize)) -> bool,
) {
    let mut front = 0;
    while front + 1 < groups.len() && groups[front].2 < k {
        let (a, b) = (groups[front], groups[front + 1]);
        if adjacent(&a, &b) {
            groups[front + 1] = (a.0.min(b.0), a.1.max(b.1), a.2 + b.2);
            groups.remove(front);
        } else {
            front += 1;
        }
    }
}

/// [`Encoding::record_visit_limit`]: the length that `min_patients` training records reach, rounded down to
/// a whole number of strides past the first window (0 without windows).
fn record_visit_limit(mut lengths: Vec<usize>, options: &EncodingOptions) -> usize {
    let (m, stride) = (options.max_visits, options.window_stride);
    if stride == 0 {
        return 0;
    }
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let reached = lengths.get(options.min_patients.max(1) - 1).copied().unwrap_or(0);
    m + reached.saturating_sub(m) / stride * stride
}

/// Under differential privacy, each vocabulary key's noisy count of patients, rounded, where it clears the
/// threshold (`StatisticsNoise::vocabulary_threshold`, at least `k`); keys below it are absent. The noise is
/// drawn in key order from the seed, so the same records and seed give the same vocabulary.
fn noisy_vocabulary(
    keys: &BTreeMap<DpKey, usize>,
    options: &EncodingOptions,
    k: usize,
) -> Result<BTreeMap<DpKey, usize>> {
    let dp = options.dp.as_ref().expect("called under differential privacy");
    check_dp_options(options)?;
    let noise = dp.noise()?;
    let threshold = noise.vocabulary_threshold(k, dp.max_codes_per_patient);
    let std = noise.vocabulary_std(dp.max_codes_per_patient);
    let mut rng = dp.rng(NoiseStream::Vocabulary);
    let mut out = BTreeMap::new();
    for (key, &n) in keys {
        let noisy = n as f64 + std * rng.standard_normal();
        if noisy >= threshold {
            out.insert(key.clone(), (noisy.round() as usize).max(k));
        }
    }
    Ok(out)
}

/// What differential privacy does not cover yet is refused rather than released from exact counts.
fn check_dp_options(options: &EncodingOptions) -> Result<()> {
    if options.visit_size_buckets > 0 {
        return Err(Error::Invalid(
            "--visit-size-buckets with differential privacy: the size edges are quantiles of the data, which \
             are not yet released privately; leave the size group out (--visit-size-buckets 0)"
                .into(),
        ));
    }
    if options.window_stride > 0 {
        return Err(Error::Invalid(
            "--windows with differential privacy: the sampled record length limit is the length that \
             --min-patients records reach, which is not yet released privately; train without --windows"
                .into(),
        ));
    }
    Ok(())
}
