//! What fitting an encoding counts, one patient at a time: over all patients and over the training ones
//! ([`FitCounts`]); `fit.rs` turns the counts into the vocabulary and the bucket edges.

use super::*;

/// What fitting an encoding needs from the records, counted one patient at a time: over all patients
/// ([`FitCounts::observe`]) and over the training ones ([`FitCounts::observe_train`]).
#[derive(Default)]
pub(super) struct FitCounts {
    /// Per code: (occurrences, patients with it).
    pub(super) codes: HashMap<String, (usize, usize)>,
    /// Per visit type: patients with a visit of it.
    pub(super) visit_types: BTreeMap<String, usize>,
    pub(super) untyped_visit: bool,
    pub(super) labels: LabelCounts,
    /// Per demographic category (but birth year): value -> patients.
    pub(super) demographics: BTreeMap<DemographicCategory, BTreeMap<String, usize>>,
    pub(super) birth_years: Vec<i32>,
    pub(super) train: TrainCounts,
    /// Under differential privacy: per vocabulary key, the patients counted for it (each patient for at most
    /// `max_codes_per_patient` keys).
    pub(super) dp_keys: BTreeMap<DpKey, usize>,
}

/// What the vocabulary's noisy counts are kept for under differential privacy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum DpKey {
    Demographic(DemographicCategory, String),
    BirthDecade(i32),
    VisitType(String),
    Code(String),
}

/// The keys a patient is counted for under DP: its demographic values and visit types first, then its
/// distinct codes, the `max_codes_per_patient` first ranked by the seeded hash when it has more.
fn bounded_keys(p: &Patient, options: &EncodingOptions, dp: &crate::privacy::statistics::DpStatistics) -> Vec<DpKey> {
    let mut keys = Vec::new();
    if options.demographics {
        for category in DemographicCategory::ALL {
            if category == DemographicCategory::BirthYear {
                continue;
            }
            if let Some(value) = demographic_value(p, category) {
                keys.push(DpKey::Demographic(category, value));
            }
        }
        keys.extend(birth_year(p).map(|y| DpKey::BirthDecade(BirthDecade::of_year(y).first_year)));
    }
    let types: BTreeSet<&str> = p.visits.iter().filter_map(|v| v.visit_type.as_deref()).collect();
    keys.extend(types.into_iter().map(|t| DpKey::VisitType(t.to_string())));
    keys.truncate(dp.max_codes_per_patient);
    if options.public_codes.is_some() {
        // The codes come from the public list: none is counted.
        return keys;
    }
    let codes: BTreeSet<&str> = p.visits.iter().flat_map(|v| &v.codes).map(String::as_str).collect();
    let mut ranked: Vec<(u64, &str)> = codes.into_iter().map(|c| (dp.key_rank(&p.id, c), c)).collect();
    let room = dp.max_codes_per_patient - keys.len();
    if ranked.len() > room {
        ranked.select_nth_unstable(room);
        ranked.truncate(room);
    }
    keys.extend(ranked.into_iter().map(|(_, c)| DpKey::Code(c.to_string())));
    keys
}

/// The training split's part of [`FitCounts`].
pub(super) struct TrainCounts {
    /// Each patient's largest gap (the closing edge is about patients, not visits), and age at first visit.
    pub(super) largest_gaps: Vec<f64>,
    pub(super) ages: Vec<f64>,
    /// Every gap between consecutive dated visits, patient after patient (`gap_ends[i]` ends patient i's).
    pub(super) gaps: Vec<f64>,
    pub(super) gap_ends: Vec<usize>,
    /// Per lab: its values, and each patient's lowest and highest (the outer edges are about patients).
    pub(super) labs: BTreeMap<String, LabSample>,
    pub(super) always_gap: bool,
    pub(super) always_age: bool,
    /// Each patient's earliest and latest visit year (the calendar edges close about patients), and whether
    /// every kept visit before another has a year.
    pub(super) first_years: Vec<f64>,
    pub(super) last_years: Vec<f64>,
    pub(super) always_calendar: bool,
    pub(super) visit_types: BTreeSet<String>,
    pub(super) lengths: Vec<usize>,
    /// Whether every lab value's code is among its visit's codes (as the OMOP and MEDS readers list them).
    pub(super) lab_codes_listed: bool,
    /// Visits' labs with a value, and of those the ones with two or more different values in the visit.
    pub(super) labs_valued: usize,
    pub(super) labs_valued_twice: usize,
}

impl TrainCounts {
    /// What the encoding says of its lab values: whether the training visits list each value's code
    /// ([`Encoding::lab_codes_listed`]), whether a value then stands for its code
    /// ([`Encoding::lab_codes_implied`]), and whether a visit holds at most one bucket of a lab
    /// ([`Encoding::lab_buckets_exclusive`]). None under differential privacy, being facts of every record.
    pub(super) fn lab_facts(&self, options: &EncodingOptions) -> (bool, bool, bool) {
        let listed = self.lab_codes_listed && options.labs && options.dp.is_none();
        let implied = listed && options.imply_lab_codes;
        let once = (self.labs_valued_twice as f64) < LAB_VALUED_TWICE_SHARE * self.labs_valued as f64;
        (listed, implied, implied && once)
    }
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
            first_years: Vec::new(),
            last_years: Vec::new(),
            always_calendar: true,
            visit_types: BTreeSet::new(),
            lengths: Vec::new(),
            lab_codes_listed: true,
            labs_valued: 0,
            labs_valued_twice: 0,
        }
    }
}

/// Given labels: names in first-seen order and what [`partition_groups`] decides on.
#[derive(Default)]
pub(super) struct LabelCounts {
    pub(super) given: bool,
    pub(super) names: Vec<String>,
    pub(super) seen: BTreeSet<String>,
    pub(super) declared: BTreeSet<String>,
    /// Per prefix (the name before its last `/`): the first record setting two labels of it.
    pub(super) first_with_two: BTreeMap<String, String>,
    /// Training records with labels, and per prefix those of them setting exactly one label of it.
    pub(super) labelled_train: usize,
    pub(super) exactly_one_train: BTreeMap<String, usize>,
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
    pub(super) fn observe(&mut self, p: &Patient, options: &EncodingOptions) -> Result<()> {
        if let Some(dp) = &options.dp {
            for key in bounded_keys(p, options, dp) {
                *self.dp_keys.entry(key).or_default() += 1;
            }
        }
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

    pub(super) fn observe_train(&mut self, p: &Patient, options: &EncodingOptions) {
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
        // The age goes on the first visit encoded: a record cut to its most recent visits starts later in
        // life than its first visit (the demo's edges closed at 42 years while cut records start at 60-90).
        t.ages
            .extend(age_at_visit(p, options.first_encoded_visit(p.visits.len())));
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
            t.lab_codes_listed &= p
                .visits
                .iter()
                .all(|v| v.labs.iter().all(|l| v.codes.contains(&l.code)));
            for visit in &p.visits {
                let mut values: BTreeMap<&str, (f64, bool)> = BTreeMap::new();
                for lab in &visit.labs {
                    let v = values.entry(lab.code.as_str()).or_insert((lab.value, false));
                    v.1 |= v.0 != lab.value;
                }
                t.labs_valued += values.len();
                t.labs_valued_twice += values.values().filter(|(_, twice)| *twice).count();
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
        if options.calendar {
            let years = visit_years(p);
            let kept: Vec<f64> = years[keep_from..].iter().flatten().copied().collect();
            t.first_years.extend(kept.iter().copied().reduce(f64::min));
            t.last_years.extend(kept.iter().copied().reduce(f64::max));
            // The first kept visit carries its own year, every later one the year of the visit before.
            let carried = keep_from..years.len().saturating_sub(1).max((keep_from + 1).min(years.len()));
            t.always_calendar &= years[carried].iter().all(Option::is_some);
        }
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

    /// The given labels' names in vocabulary order (first seen, the members of a group together) and the
    /// groups that partition the records.
    /// Under differential privacy (`detect` false) only declared groups are used: whether every training
    /// record sets exactly one label of a prefix is a fact about the records that one patient can change.
    pub(super) fn ordered_names(&self, detect: bool) -> Result<(Vec<String>, Vec<LabelCategory>)> {
        let partitions = self.partition_groups(detect)?;
        let mut groups = Vec::new();
        let mut ordered: Vec<String> = Vec::with_capacity(self.names.len());
        for name in &self.names {
            if ordered.contains(name) {
                continue;
            }
            match partitions.iter().find(|(_, members)| members.contains(name)) {
                Some((prefix, members)) => {
                    groups.push(LabelCategory {
                        name: prefix.clone(),
                        first: ordered.len(),
                        len: members.len(),
                    });
                    ordered.extend(members.iter().cloned());
                }
                None => ordered.push(name.clone()),
            }
        }
        Ok((ordered, groups))
    }

    /// Groups of given labels sharing the name before their last `/`: declared ones (every record holds at
    /// most one of their labels; a record with two is an error), and detected ones (at least two labels, of
    /// which every training record with labels has exactly one set). Returns (prefix, members in first-seen
    /// order).
    fn partition_groups(&self, detect: bool) -> Result<Vec<(String, Vec<String>)>> {
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
            } else if detect
                && members.len() >= 2
                && self.labelled_train > 0
                && self.exactly_one_train.get(prefix).copied().unwrap_or(0) == self.labelled_train
            {
                groups.push((prefix.to_string(), members));
            }
        }
        Ok(groups)
    }
}
