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
        let k = options.min_patients.max(1);
        let mut left_out = LeftOut::default();
        // Continuous values: edges from the training split.
        let mut gaps: Vec<f64> = Vec::new();
        let mut ages: Vec<f64> = Vec::new();
        // Per lab: its values, and each patient's lowest and highest (the outer edges are about patients).
        let mut lab_values: BTreeMap<String, LabSample> = BTreeMap::new();
        for p in train {
            let days = visit_days(p);
            // A patient's largest gap stands for them (the closing edge is about patients, not visits).
            let largest = days
                .windows(2)
                .filter_map(|w| Some(w[1]? - w[0]?))
                .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
            gaps.extend(largest);
            ages.extend(age_at_first_visit(p));
            if options.labs {
                let mut range: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
                for v in &p.visits {
                    for lab in &v.labs {
                        lab_values.entry(lab.code.clone()).or_default().values.push(lab.value);
                        let r = range.entry(lab.code.as_str()).or_insert((lab.value, lab.value));
                        *r = (r.0.min(lab.value), r.1.max(lab.value));
                    }
                }
                for (code, (lowest, highest)) in range {
                    let sample = lab_values.get_mut(code).expect("collected above");
                    sample.patient_lowest.push(lowest);
                    sample.patient_highest.push(highest);
                }
            }
        }
        let (any_gap, any_age) = (!gaps.is_empty(), !ages.is_empty());
        let max_gap = closing_value(&mut gaps, k);
        let max_age = closing_value(&mut ages, k);
        let gap_base = spec
            .and_then(|s| s.gap_edges_days.clone())
            .unwrap_or_else(|| DEFAULT_GAP_EDGES_DAYS.to_vec());
        let gap_edges_days = closed_edges(&gap_base, max_gap);
        let gap_quantiles_days = match options.gaps {
            true => gap_quantiles(train, &gap_edges_days, k),
            false => Vec::new(),
        };
        let age_base: Vec<f64> = (0..24).map(|i| i as f64 * AGE_BUCKET_YEARS).collect();
        let age_edges_years = closed_edges(&age_base, max_age);
        let mut lab_edges = BTreeMap::new();
        for (code, mut sample) in lab_values {
            if sample.patients() < k {
                left_out.labs += 1;
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

        // Medical codes, with frequencies for the `frequency` order.
        let mut freq: HashMap<&str, usize> = HashMap::new();
        let mut patients_with: HashMap<&str, usize> = HashMap::new();
        for p in all {
            let mut seen = BTreeSet::new();
            for v in &p.visits {
                for c in &v.codes {
                    *freq.entry(c.as_str()).or_default() += 1;
                    if seen.insert(c.as_str()) {
                        *patients_with.entry(c.as_str()).or_default() += 1;
                    }
                }
            }
        }
        left_out.codes = patients_with.values().filter(|&&n| n < k).count();
        let mut medical: Vec<Token> = patients_with
            .iter()
            .filter(|(_, &n)| n >= k)
            .map(|(c, _)| Token::Code { code: c.to_string() })
            .collect();
        for (code, edges) in &lab_edges {
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
                    Token::Code { code } => freq.get(code.as_str()).copied().unwrap_or(0),
                    Token::Lab { code, .. } => freq.get(code.as_str()).copied().unwrap_or(0),
                    _ => 0,
                };
                medical.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.to_string().cmp(&b.to_string())));
            }
            CodeOrder::Shuffled => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.order_seed);
                medical.shuffle(&mut rng);
            }
        }
        let visit_size_edges = match options.visit_size_buckets {
            0 => Vec::new(),
            buckets => fit_visit_size_edges(train, &medical, &lab_edges, &options, buckets, k),
        };
        // Time codes come first in a visit: gap, then age (first visit only), then the visit's size.
        let mut tokens = Vec::new();
        let mut visit_groups = Vec::new();
        // Every kept visit after the first has a gap when both days are known; the first kept one an age
        // when the birth is known. A group is exclusive only when the training records always have it.
        let (mut always_gap, mut always_age) = (true, true);
        for p in train {
            let keep_from = options.first_encoded_visit(p.visits.len());
            let days = visit_days(p);
            always_gap &= p.visits.len() - keep_from < 2 || days[keep_from..].iter().all(Option::is_some);
            always_age &= p.visits.is_empty() || age_at_visit(p, keep_from).is_some();
        }
        // Only when the training records have dates at all.
        let mut time_codes = |present: bool, always: bool, name: &str, on: GroupVisits, codes: Vec<Token>| {
            if !(options.gaps && present) {
                return;
            }
            if always {
                visit_groups.push(VisitGroup {
                    name: name.into(),
                    first: tokens.len(),
                    len: codes.len(),
                    on,
                });
            }
            tokens.extend(codes);
        };
        let gap_codes = (0..gap_edges_days.len() - 1)
            .map(|bucket| Token::Gap { bucket })
            .collect();
        time_codes(
            any_gap,
            always_gap,
            VisitGroup::GAP,
            GroupVisits::LaterVisits,
            gap_codes,
        );
        let age_codes = (0..age_edges_years.len() - 1)
            .map(|bucket| Token::Age { bucket })
            .collect();
        time_codes(any_age, always_age, VisitGroup::AGE, GroupVisits::FirstVisit, age_codes);
        let (type_codes, rare_types) = visit_type_tokens(all, train, k);
        left_out.visit_types = rare_types;
        if !type_codes.is_empty() {
            visit_groups.push(VisitGroup {
                name: VisitGroup::VISIT_TYPE.into(),
                first: tokens.len(),
                len: type_codes.len(),
                on: GroupVisits::EveryVisit,
            });
            tokens.extend(type_codes);
        }
        if visit_size_edges.len() >= 2 {
            visit_groups.push(VisitGroup {
                name: VisitGroup::SIZE.into(),
                first: tokens.len(),
                len: visit_size_edges.len() - 1,
                on: GroupVisits::EveryVisit,
            });
            tokens.extend((0..visit_size_edges.len() - 1).map(|bucket| Token::VisitSize { bucket }));
        }
        tokens.extend(medical);
        let code_vocab_size = tokens.len();

        // Labels: given in the records, or from the spec.
        let labels_given = all.iter().any(|p| p.labels.is_some());
        let mut label_groups = Vec::new();
        let label_names: Vec<String> = if labels_given {
            let mut names = Vec::new();
            let mut seen = BTreeSet::new();
            for p in all {
                for name in p.labels.iter().flat_map(|l| l.keys()) {
                    if seen.insert(name.clone()) {
                        names.push(name.clone());
                    }
                }
            }
            // Labels that partition the records (GENDER/F, GENDER/M), or that the records declare a group
            // (JSONL `"GENDER": "F"`), sit together and form a group.
            let declared: BTreeSet<&str> = all
                .iter()
                .flat_map(|p| p.label_groups.iter().map(String::as_str))
                .collect();
            let partitions = partition_groups(&names, train, &declared, all)?;
            let mut ordered: Vec<String> = Vec::with_capacity(names.len());
            for name in &names {
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
            for category in DemographicCategory::ALL {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                if category == DemographicCategory::BirthYear {
                    counts = birth_year_values(all.iter().filter_map(birth_year), k);
                } else {
                    for value in all.iter().filter_map(|p| demographic_value(p, category)) {
                        *counts.entry(value).or_default() += 1;
                    }
                }
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
        // Labels from the spec are a function of codes: list, per label, the vocabulary codes that set it.
        let derived_labels = match spec {
            Some(spec) if !labels_given => (code_vocab_size..tokens.len())
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
                .collect(),
            _ => Vec::new(),
        };
        let label_vocab_size = tokens.len() - code_vocab_size;
        tokens.extend([Token::Start, Token::End, Token::Pad]);
        let record_visit_limit = record_visit_limit(train, &options);
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

/// The visit type group's tokens (empty when no training visit has a kept type) and how many types the
/// small-cell rule left out. A type is kept when at least `k` of all patients have a visit of it (as codes
/// are); `VISIT_TYPE/<other>` is added when some visit has no kept type (no type, or a rare one), so that
/// every visit holds exactly one token of the group and a rare type is never named.
fn visit_type_tokens(all: &[Patient], train: &[&Patient], k: usize) -> (Vec<Token>, usize) {
    let mut patients_with: BTreeMap<&str, usize> = BTreeMap::new();
    for p in all {
        let types: BTreeSet<&str> = p.visits.iter().filter_map(|v| v.visit_type.as_deref()).collect();
        for t in types {
            *patients_with.entry(t).or_default() += 1;
        }
    }
    let rare = patients_with.values().filter(|&&n| n < k).count();
    let kept: BTreeSet<&str> = patients_with
        .into_iter()
        .filter(|(_, n)| *n >= k)
        .map(|(t, _)| t)
        .collect();
    let typed_training_visit = train
        .iter()
        .flat_map(|p| &p.visits)
        .any(|v| v.visit_type.as_deref().is_some_and(|t| kept.contains(t)));
    if !typed_training_visit {
        return (Vec::new(), rare);
    }
    let untyped_visit = all
        .iter()
        .flat_map(|p| &p.visits)
        .any(|v| !v.visit_type.as_deref().is_some_and(|t| kept.contains(t)));
    let mut tokens: Vec<Token> = kept
        .into_iter()
        .map(|t| Token::VisitType {
            value: Some(t.to_string()),
        })
        .collect();
    if untyped_visit {
        tokens.push(Token::VisitType { value: None });
    }
    (tokens, rare)
}

/// [`Encoding::visit_size_edges`]: quantiles of the sizes of the training visits that are encoded (each
/// visit's own codes as `medical` and `lab_edges` encode them), top-coded at the `k`-th patient's smallest and
/// largest visit like the lab edges, so that no edge describes fewer than `k` patients. Empty when no
/// training visit is encoded.
fn fit_visit_size_edges(
    train: &[&Patient],
    medical: &[Token],
    lab_edges: &BTreeMap<String, Vec<f64>>,
    options: &EncodingOptions,
    buckets: usize,
    k: usize,
) -> Vec<f64> {
    let index: HashMap<String, u32> = medical
        .iter()
        .enumerate()
        .map(|(i, t)| (token_key(t), i as u32))
        .collect();
    let mut sizes = LabSample::default();
    let mut unknown = 0;
    for p in train {
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
    }
    if sizes.values.is_empty() {
        return Vec::new();
    }
    sizes.edges(buckets, k)
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
fn gap_quantiles(train: &[&Patient], edges: &[f64], k: usize) -> Vec<Vec<f64>> {
    let buckets = edges.len().saturating_sub(1);
    let mut samples: Vec<LabSample> = (0..buckets).map(|_| LabSample::default()).collect();
    for p in train {
        let mut range: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for pair in visit_days(p).windows(2) {
            if let [Some(a), Some(b)] = pair {
                let gap = b - a;
                let bucket = bucket_of(edges, gap);
                samples[bucket].values.push(gap);
                let r = range.entry(bucket).or_insert((gap, gap));
                *r = (r.0.min(gap), r.1.max(gap));
            }
        }
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
fn record_visit_limit(train: &[&Patient], options: &EncodingOptions) -> usize {
    let (m, stride) = (options.max_visits, options.window_stride);
    if stride == 0 {
        return 0;
    }
    let mut lengths: Vec<usize> = train.iter().map(|p| p.visits.len()).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let reached = lengths.get(options.min_patients.max(1) - 1).copied().unwrap_or(0);
    m + reached.saturating_sub(m) / stride * stride
}

/// Groups of given labels sharing the name before their last `/`: declared ones (every record holds at most
/// one of their labels; a record with two is an error), and detected ones (at least two labels, of which
/// every training record with labels has exactly one set). Returns (prefix, members in first-seen order).
fn partition_groups(
    names: &[String],
    train: &[&Patient],
    declared: &BTreeSet<&str>,
    all: &[Patient],
) -> Result<Vec<(String, Vec<String>)>> {
    let mut by_prefix: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in names {
        if let Some((prefix, _)) = name.rsplit_once('/') {
            by_prefix.entry(prefix).or_default().push(name.clone());
        }
    }
    let set_in =
        |l: &BTreeMap<String, bool>, members: &[String]| members.iter().filter(|m| l.get(*m) == Some(&true)).count();
    let labelled: Vec<&BTreeMap<String, bool>> = train.iter().filter_map(|p| p.labels.as_ref()).collect();
    let mut groups = Vec::new();
    for (prefix, members) in by_prefix {
        if declared.contains(prefix) {
            if let Some(p) = all
                .iter()
                .find(|p| p.labels.as_ref().is_some_and(|l| set_in(l, &members) > 1))
            {
                return Err(Error::Invalid(format!(
                    "record `{}` sets more than one label of the group `{prefix}`, which the records declare \
                     (\"{prefix}\": \"<value>\"): a group holds one value",
                    p.id
                )));
            }
            groups.push((prefix.to_string(), members));
        } else if members.len() >= 2 && !labelled.is_empty() && labelled.iter().all(|l| set_in(l, &members) == 1) {
            groups.push((prefix.to_string(), members));
        }
    }
    Ok(groups)
}
