//! The OMOP reader's compact store: tables read into interned ids and flat arrays, grouped per visit once,
//! from which patients are built one at a time.

use super::*;

/// An OMOP folder read into compact, interned form (about 8 bytes an event, 24 a lab value, 24 a visit):
/// what [`crate::source::Records`] streams patients from, one at a time, as often as a step needs, without
/// holding every record's strings at once.
pub struct OmopStore {
    persons: Vec<Person>,
    /// Persons in ascending `person_id`, each with their visits (indices into `visits`) in time order;
    /// persons without visits are left out.
    order: Vec<(u32, Vec<u32>)>,
    visits: Vec<VisitRow>,
    /// Per visit, its distinct codes in first-seen order: `codes[code_start[v]..code_start[v + 1]]`.
    code_start: Vec<u64>,
    codes: Vec<u32>,
    /// Lab values in file order (`lab_codes`, `lab_values`); per visit, the positions of its own in file
    /// order: `lab_order[lab_start[v]..lab_start[v + 1]]`. Kept in file order with a permutation beside them
    /// rather than copied into visit order, which would hold both copies at once while grouping.
    lab_start: Vec<u64>,
    lab_order: Vec<u32>,
    lab_codes: Vec<u32>,
    lab_values: Vec<f64>,
    names: Interner,
    visit_types: Interner,
    pub report: ReadReport,
}

impl OmopStore {
    /// Reads the folder's tables (see the module documentation).
    pub fn read(dir: &Path) -> Result<OmopStore> {
        let files = TableFiles::scan(dir)?;
        let mut report = ReadReport::default();
        let persons = read_persons(&files.required(dir, "person")?)?;
        let mut visits = read_visits(&files.required(dir, "visit_occurrence")?, &persons, &mut report)?;
        let mut events = Events::default();
        for table in &EVENT_TABLES {
            match files.optional(table.table)? {
                Some(path) => read_events(&path, table, &persons, &mut visits, &mut events, &mut report)?,
                None => report.skip(&format!("table {}.csv absent", table.table)),
            }
        }
        if let Some(path) = files.optional("death")? {
            read_deaths(&path, &persons, &visits, &mut events, &mut report)?;
        }
        Ok(assemble(persons, visits, events, report))
    }

    /// Persons with at least one visit.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Calls `each` with every person with visits, in ascending `person_id`.
    pub fn for_each_patient(&self, each: &mut dyn FnMut(Patient) -> Result<()>) -> Result<()> {
        for (person, visits) in &self.order {
            let person = &self.persons[*person as usize];
            each(Patient {
                id: person.id.to_string(),
                demographics: person.demographics.clone(),
                visits: visits.iter().map(|&v| self.visit(v as usize)).collect(),
                ..Patient::default()
            })?;
        }
        Ok(())
    }

    fn visit(&self, v: usize) -> Visit {
        let name = |i: u32| self.names.name(i).to_string();
        let codes = &self.codes[self.code_start[v] as usize..self.code_start[v + 1] as usize];
        let labs = &self.lab_order[self.lab_start[v] as usize..self.lab_start[v + 1] as usize];
        let row = &self.visits[v];
        Visit {
            day: None,
            time: Some(crate::time::format_record_time(row.start)),
            codes: codes.iter().map(|&c| name(c)).collect(),
            labs: labs
                .iter()
                .map(|&i| LabValue {
                    code: name(self.lab_codes[i as usize]),
                    value: self.lab_values[i as usize],
                })
                .collect(),
            visit_type: row.visit_type.map(|t| self.visit_types.name(t).to_string()),
        }
    }
}

/// Groups the events by visit (distinct codes in first-seen order, lab values in file order), drops visits
/// without codes, and orders persons by id and their visits by time.
fn assemble(persons: Persons, visits: Visits, events: Events, mut report: ReadReport) -> OmopStore {
    let Visits {
        list: visits,
        index,
        types,
    } = visits;
    // Only reading needed the ids; freed before grouping, when memory peaks.
    drop(index);
    let n_visits = visits.len();
    let (lab_start, lab_order, lab_codes) = group_labs(&events.lab_events, &events.codes, n_visits);
    drop(events.lab_events);
    let (code_start, codes, events_per_visit) = group_codes(&events.codes, n_visits, events.names.len());
    drop(events.codes);
    let mut order = Vec::new();
    for (person, mut list) in visits_by_person(&visits, persons.rows.len()).into_iter().enumerate() {
        report.patients += 1;
        list.retain(|&v| {
            let v = v as usize;
            let has_codes = code_start[v + 1] > code_start[v];
            if has_codes {
                report.events += events_per_visit[v] as usize;
            } else {
                report.skip("visits without codes");
            }
            has_codes
        });
        if list.is_empty() {
            report.patients_without_visits += 1;
            continue;
        }
        // Stable: visits starting together keep file order (as `crate::sort_visits` does).
        if list
            .windows(2)
            .any(|w| visits[w[0] as usize].start > visits[w[1] as usize].start)
        {
            list.sort_by_key(|&v| visits[v as usize].start);
            report.skip("records with visits out of time order (sorted)");
        }
        report.visits += list.len();
        order.push((person as u32, list));
    }
    order.sort_by_key(|(person, _)| persons.rows[*person as usize].id);
    OmopStore {
        persons: persons.rows,
        order,
        visits,
        code_start,
        codes,
        lab_start,
        lab_order,
        lab_codes,
        lab_values: events.lab_values,
        names: events.names,
        visit_types: types,
        report,
    }
}

/// Per visit, its distinct codes in first-seen order (`(starts, codes)` as in [`OmopStore`]) and how many
/// event rows it got.
fn group_codes(events: &[(u32, u32)], n_visits: usize, n_codes: usize) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
    let mut per_visit = vec![0u32; n_visits];
    for &(v, _) in events {
        per_visit[v as usize] += 1;
    }
    let mut slot: Vec<u64> = Vec::with_capacity(n_visits + 1);
    let mut total = 0u64;
    for &n in &per_visit {
        slot.push(total);
        total += u64::from(n);
    }
    let mut grouped = vec![0u32; total as usize];
    let mut next = slot.clone();
    for &(v, code) in events {
        grouped[next[v as usize] as usize] = code;
        next[v as usize] += 1;
    }
    // Distinct codes per visit, compacted in place; `seen[code]` holds the last visit (plus one) that had it.
    let mut seen = vec![0u32; n_codes];
    let mut starts = Vec::with_capacity(n_visits + 1);
    let mut kept = 0usize;
    for v in 0..n_visits {
        starts.push(kept as u64);
        let (from, to) = (slot[v] as usize, next[v] as usize);
        for i in from..to {
            let code = grouped[i];
            if seen[code as usize] != v as u32 + 1 {
                seen[code as usize] = v as u32 + 1;
                grouped[kept] = code;
                kept += 1;
            }
        }
    }
    starts.push(kept as u64);
    grouped.truncate(kept);
    grouped.shrink_to_fit();
    (starts, grouped, per_visit)
}

/// Per visit, the positions of its lab values in file order (`(starts, order)` as in [`OmopStore`]), and
/// each lab value's code.
fn group_labs(lab_events: &[u32], events: &[(u32, u32)], n_visits: usize) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u64; n_visits + 1];
    for &e in lab_events {
        starts[events[e as usize].0 as usize + 1] += 1;
    }
    for v in 0..n_visits {
        starts[v + 1] += starts[v];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; lab_events.len()];
    for (i, &e) in lab_events.iter().enumerate() {
        let v = events[e as usize].0 as usize;
        order[next[v] as usize] = i as u32;
        next[v] += 1;
    }
    let codes = lab_events.iter().map(|&e| events[e as usize].1).collect();
    (starts, order, codes)
}
