//! Fitting an encoding on records: the vocabulary under the small-cell rule, bucket edges from the training
//! split, the exclusive groups (time codes, partitioning labels).

use super::*;

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

/// What fitting an encoding needs from the records, counted one patient at a time: over all patients
/// ([`FitCounts::observe`]) and over the training ones ([`FitCounts::observe_train`]).
#[derive(Default)]
struct FitCounts {
    /// Per code: (occurrences, patients with it).
    codes: HashMap<String, (usize, usize)>,
    /// Per visit type: patients with a visit of it.
    visit_types: BTreeMap<String, usize>,
    untyped_visit: bool,
    labels: LabelCounts,
    /// Per demographic category (but birth year): value -> patients.
    demographics: BTreeMap<DemographicCategory, BTreeMap<String, usize>>,
    birth_years: Vec<i32>,
    train: TrainCounts,
}

/// The training split's part of [`FitCounts`].
struct TrainCounts {
    /// Each patient's largest gap (the closing edge is about patients, not visits), and age at first visit.
    largest_gaps: Vec<f64>,
    ages: Vec<f64>,
    /// Every gap between consecutive dated visits, patient after patient (`gap_ends[i]` ends patient i's).
    gaps: Vec<f64>,
    gap_ends: Vec<usize>,
    /// Per lab: its values, and each patient's lowest and highest (the outer edges are about patients).
    labs: BTreeMap<String, LabSample>,
    always_gap: bool,
    always_age: bool,
    visit_types: BTreeSet<String>,
    lengths: Vec<usize>,
}

impl Default for TrainCounts {
    fn default() -> TrainCounts {
        TrainCounts {
            largest_gaps: Vec::new(),
            ages: Vec::new(),
            gaps: Vec::new(),
            gap_ends: Vec::new(),
            labs: BTreeMap::new(),
            always_gap: true,
            always_age: true,
            visit_types: BTreeSet::new(),
            lengths: Vec::new(),
        }
    }
}

/// Given labels: names in first-seen order and what [`partition_groups`] decides on.
#[derive(Default)]
struct LabelCounts {
    given: bool,
    names: Vec<String>,
    seen: BTreeSet<String>,
    declared: BTreeSet<String>,
    /// Per prefix (the name before its last `/`): the first record setting two labels of it.
    first_with_two: BTreeMap<String, String>,
    /// Training records with labels, and per prefix those of them setting exactly one label of it.
    labelled_train: usize,
    exactly_one_train: BTreeMap<String, usize>,
}

/// Per prefix of a record's set labels, how many it sets.
fn set_per_prefix(labels: &BTreeMap<String, bool>) -> BTreeMap<&str, usize> {
    let mut per = BTreeMap::new();
    for (name, _) in labels.iter().filter(|(_, &set)| set) {
        if let Some((prefix, _)) = name.rsplit_once('/') {
            *per.entry(prefix).or_default() += 1;
        }
    }
    per
}

impl FitCounts {
    fn observe(&mut self, p: &Patient, options: &EncodingOptions) -> Result<()> {
        let mut seen = BTreeSet::new();
        for c in p.visits.iter().flat_map(|v| &v.codes) {
            let first = seen.insert(c.as_str());
            match self.codes.get_mut(c.as_str()) {
                Some((n, patients)) => {
                    *n += 1;
                    *patients += usize::from(first);
                }
                None => {
                    self.codes.insert(c.clone(), (1, 1));
                }
            }
        }
        let types: BTreeSet<&str> = p.visits.iter().filter_map(|v| v.visit_type.as_deref()).collect();
        for t in types {
            match self.visit_types.get_mut(t) {
                Some(n) => *n += 1,
                None => {
                    self.visit_types.insert(t.to_string(), 1);
                }
            }
        }
        self.untyped_visit |= p.visits.iter().any(|v| v.visit_type.is_none());
        self.labels.observe(p);
        if options.demographics {
            for category in DemographicCategory::ALL {
                if category == DemographicCategory::BirthYear {
                    continue;
                }
                if let Some(value) = demographic_value(p, category) {
                    *self.demographics.entry(category).or_default().entry(value).or_default() += 1;
                }
            }
            self.birth_years.extend(birth_year(p));
        }
        Ok(())
    }

    fn observe_train(&mut self, p: &Patient, options: &EncodingOptions) {
        let t = &mut self.train;
        let days = visit_days(p);
        let mut largest: Option<f64> = None;
        for pair in days.windows(2) {
            if let [Some(a), Some(b)] = pair {
                let gap = b - a;
                t.gaps.push(gap);
                largest = Some(largest.map_or(gap, |m| m.max(gap)));
            }
        }
        t.gap_ends.push(t.gaps.len());
        t.largest_gaps.extend(largest);
        t.ages.extend(age_at_first_visit(p));
        if options.labs {
            let mut range: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for lab in p.visits.iter().flat_map(|v| &v.labs) {
                match t.labs.get_mut(&lab.code) {
                    Some(sample) => sample.values.push(lab.value),
                    None => {
                        let mut sample = LabSample::default();
                        sample.values.push(lab.value);
                        t.labs.insert(lab.code.clone(), sample);
                    }
                }
                let r = range.entry(lab.code.as_str()).or_insert((lab.value, lab.value));
                *r = (r.0.min(lab.value), r.1.max(lab.value));
            }
            for (code, (lowest, highest)) in range {
                let sample = t.labs.get_mut(code).expect("collected above");
                sample.patient_lowest.push(lowest);
                sample.patient_highest.push(highest);
            }
        }
        // Every kept visit after the first has a gap when both days are known; the first kept one an age
        // when the birth is known. A group is exclusive only when the training records always have it.
        let keep_from = options.first_encoded_visit(p.visits.len());
        t.always_gap &= p.visits.len() - keep_from < 2 || days[keep_from..].iter().all(Option::is_some);
        t.always_age &= p.visits.is_empty() || age_at_visit(p, keep_from).is_some();
        for v in &p.visits {
            if let Some(ty) = &v.visit_type {
                if !t.visit_types.contains(ty) {
                    t.visit_types.insert(ty.clone());
                }
            }
        }
        t.lengths.push(p.visits.len());
        if let Some(labels) = &p.labels {
            self.labels.labelled_train += 1;
            for (prefix, n) in set_per_prefix(labels) {
                if n == 1 {
                    *self.labels.exactly_one_train.entry(prefix.to_string()).or_default() += 1;
                }
            }
        }
    }

    /// The encoding; `train_pass` calls its argument on every training patient again (in the order
    /// observed), needed only for the visit sizes.
    fn finish(self, spec: Option<&LabelSpec>, options: EncodingOptions, train_pass: TrainPass<'_>) -> Result<Encoding> {
        let k = options.min_patients.max(1);
        let mut left_out = LeftOut::default();
        let FitCounts {
            codes,
            visit_types,
            untyped_visit,
            labels,
            demographics,
            birth_years,
            train: mut t,
        } = self;
        let (any_gap, any_age) = (!t.largest_gaps.is_empty(), !t.ages.is_empty());
        let max_gap = closing_value(&mut t.largest_gaps, k);
        let max_age = closing_value(&mut t.ages, k);
        let gap_base = spec
            .and_then(|s| s.gap_edges_days.clone())
            .unwrap_or_else(|| DEFAULT_GAP_EDGES_DAYS.to_vec());
        let gap_edges_days = closed_edges(&gap_base, max_gap);
        let gap_quantiles_days = match options.gaps {
            true => gap_quantiles(&t.gaps, &t.gap_ends, &gap_edges_days, k),
            false => Vec::new(),
        };
        let age_base: Vec<f64> = (0..24).map(|i| i as f64 * AGE_BUCKET_YEARS).collect();
        let age_edges_years = closed_edges(&age_base, max_age);
        let (lab_edges, rare_labs) = fit_lab_edges(t.labs, spec, &options, k);
        left_out.labs = rare_labs;
        let (medical, rare_codes) = medical_tokens(&codes, &lab_edges, &options, k);
        left_out.codes = rare_codes;
        let visit_size_edges = match options.visit_size_buckets {
            0 => Vec::new(),
            buckets => fit_visit_size_edges(train_pass, &medical, &lab_edges, &options, buckets, k)?,
        };
        // Time codes come first in a visit: gap, then age (first visit only), then the visit's type and size.
        let mut tokens = Vec::new();
        let mut visit_groups = Vec::new();
        let mut add_group =
            |tokens: &mut Vec<Token>, name: &str, on: GroupVisits, exclusive: bool, codes: Vec<Token>| {
                if exclusive {
                    visit_groups.push(VisitGroup {
                        name: name.into(),
                        first: tokens.len(),
                        len: codes.len(),
                        on,
                    });
                }
                tokens.extend(codes);
            };
        // Only when the training records have dates at all.
        if options.gaps && any_gap {
            let gap_codes = (0..gap_edges_days.len() - 1)
                .map(|bucket| Token::Gap { bucket })
                .collect();
            add_group(
                &mut tokens,
                VisitGroup::GAP,
                GroupVisits::LaterVisits,
                t.always_gap,
                gap_codes,
            );
        }
        if options.gaps && any_age {
            let age_codes = (0..age_edges_years.len() - 1)
                .map(|bucket| Token::Age { bucket })
                .collect();
            add_group(
                &mut tokens,
                VisitGroup::AGE,
                GroupVisits::FirstVisit,
                t.always_age,
                age_codes,
            );
        }
        let (type_codes, rare_types) = visit_type_tokens(&visit_types, untyped_visit, &t.visit_types, k);
        left_out.visit_types = rare_types;
        if !type_codes.is_empty() {
            add_group(
                &mut tokens,
                VisitGroup::VISIT_TYPE,
                GroupVisits::EveryVisit,
                true,
                type_codes,
            );
        }
        if visit_size_edges.len() >= 2 {
            let size_codes = (0..visit_size_edges.len() - 1)
                .map(|bucket| Token::VisitSize { bucket })
                .collect();
            add_group(&mut tokens, VisitGroup::SIZE, GroupVisits::EveryVisit, true, size_codes);
        }
        tokens.extend(medical);
        let code_vocab_size = tokens.len();

        // Labels: given in the records, or from the spec.
        let labels_given = labels.given;
        let mut label_groups = Vec::new();
        let label_names: Vec<String> = if labels_given {
            let partitions = labels.partition_groups()?;
            let mut ordered: Vec<String> = Vec::with_capacity(labels.names.len());
            for name in &labels.names {
                if ordered.contains(name) {
                    continue;
                }
                match partitions.iter().find(|(_, members)| members.contains(name)) {
                    Some((prefix, members)) => {
                        label_groups.push(LabelCategory {
                            name: prefix.clone(),
                            first: ordered.len(),
                            len: members.len(),
                        });
                        ordered.extend(members.iter().cloned());
                    }
                    None => ordered.push(name.clone()),
                }
            }
            ordered
        } else {
            spec.map(|s| s.labels.keys().cloned().collect()).unwrap_or_default()
        };
        tokens.extend(label_names.into_iter().map(|name| Token::Label { name }));
        let mut demographic_categories = Vec::new();
        if options.demographics {
            let mut demographics = demographics;
            for category in DemographicCategory::ALL {
                let counts = match category {
                    DemographicCategory::BirthYear => birth_year_values(birth_years.iter().copied(), k),
                    _ => demographics.remove(&category).unwrap_or_default(),
                };
                left_out.demographic_values += counts.values().filter(|&&n| n < k).count();
                let values: BTreeSet<String> = counts.into_iter().filter(|(_, n)| *n >= k).map(|(v, _)| v).collect();
                if values.is_empty() {
                    continue;
                }
                demographic_categories.push(LabelCategory {
                    name: category.as_str().to_string(),
                    first: tokens.len() - code_vocab_size,
                    len: values.len(),
                });
                tokens.extend(values.into_iter().map(|value| Token::Demographic { category, value }));
            }
        }
        let derived_labels = match spec {
            Some(spec) if !labels_given => derived_labels(&tokens, code_vocab_size, spec),
            _ => Vec::new(),
        };
        let label_vocab_size = tokens.len() - code_vocab_size;
        tokens.extend([Token::Start, Token::End, Token::Pad]);
        let record_visit_limit = record_visit_limit(t.lengths, &options);
        Ok(Encoding {
            options,
            tokens,
            code_vocab_size,
            label_vocab_size,
            demographic_categories,
            label_groups,
            visit_groups,
            derived_labels,
            gap_edges_days,
            gap_quantiles_days,
            age_edges_years,
            visit_size_edges,
            lab_edges,
            labels_given,
            left_out,
            record_visit_limit,
        })
    }
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

/// Labels from the spec are a function of codes: per label, the vocabulary codes that set it.
fn derived_labels(tokens: &[Token], code_vocab_size: usize, spec: &LabelSpec) -> Vec<DerivedLabel> {
    (code_vocab_size..tokens.len())
        .filter_map(|i| match &tokens[i] {
            Token::Label { name } => Some((i - code_vocab_size, name)),
            _ => None,
        })
        .map(|(label, name)| DerivedLabel {
            label,
            codes: (0..code_vocab_size)
                .filter(|&j| matches!(&tokens[j], Token::Code { code } if spec.code_sets(name, code)))
                .map(|j| j as u32)
                .collect(),
        })
        .collect()
}

impl LabelCounts {
    fn observe(&mut self, p: &Patient) {
        let Some(labels) = &p.labels else {
            self.declared.extend(p.label_groups.iter().cloned());
            return;
        };
        self.given = true;
        for name in labels.keys() {
            if !self.seen.contains(name) {
                self.seen.insert(name.clone());
                self.names.push(name.clone());
            }
        }
        self.declared.extend(p.label_groups.iter().cloned());
        for (prefix, n) in set_per_prefix(labels) {
            if n > 1 && !self.first_with_two.contains_key(prefix) {
                self.first_with_two.insert(prefix.to_string(), p.id.clone());
            }
        }
    }

    /// Groups of given labels sharing the name before their last `/`: declared ones (every record holds at
    /// most one of their labels; a record with two is an error), and detected ones (at least two labels, of
    /// which every training record with labels has exactly one set). Returns (prefix, members in first-seen
    /// order).
    fn partition_groups(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut by_prefix: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for name in &self.names {
            if let Some((prefix, _)) = name.rsplit_once('/') {
                by_prefix.entry(prefix).or_default().push(name.clone());
            }
        }
        let mut groups = Vec::new();
        for (prefix, members) in by_prefix {
            if self.declared.contains(prefix) {
                if let Some(id) = self.first_with_two.get(prefix) {
                    return Err(Error::Invalid(format!(
                        "record `{id}` sets more than one label of the group `{prefix}`, which the records \
                         declare (\"{prefix}\": \"<value>\"): a group holds one value"
                    )));
                }
                groups.push((prefix.to_string(), members));
            } else if members.len() >= 2
                && self.labelled_train > 0
                && self.exactly_one_train.get(prefix).copied().unwrap_or(0) == self.labelled_train
            {
                groups.push((prefix.to_string(), members));
            }
        }
        Ok(groups)
    }
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
    lab_edges: &BTreeMap<String, Vec<f64>>,
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
            visit_codes(
                visit,
                &index,
                options.labs.then_some(lab_edges),
                &mut codes,
                &mut unknown,
            );
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

/// [`Encoding::gap_quantiles_days`]: per bucket, the within-bucket points of the gaps between consecutive
/// dated visits of the training records (all their visits, as [`Encoding::gap_bucket_shares`] counts them).
/// Empty when no bucket has enough patients.
fn gap_quantiles(gaps: &[f64], patient_ends: &[usize], edges: &[f64], k: usize) -> Vec<Vec<f64>> {
    let buckets = edges.len().saturating_sub(1);
    let mut samples: Vec<LabSample> = (0..buckets).map(|_| LabSample::default()).collect();
    let mut from = 0;
    for &to in patient_ends {
        let mut range: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for &gap in &gaps[from..to] {
            let bucket = bucket_of(edges, gap);
            samples[bucket].values.push(gap);
            let r = range.entry(bucket).or_insert((gap, gap));
            *r = (r.0.min(gap), r.1.max(gap));
        }
        from = to;
        for (bucket, (lowest, highest)) in range {
            samples[bucket].patient_lowest.push(lowest);
            samples[bucket].patient_highest.push(highest);
        }
    }
    let points: Vec<Vec<f64>> = samples
        .iter_mut()
        .enumerate()
        .map(|(b, sample)| within_bucket_points(sample, GAP_SEGMENTS, k, (edges[b], edges[b + 1])))
        .collect();
    if points.iter().all(Vec::is_empty) {
        return Vec::new();
    }
    points
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
