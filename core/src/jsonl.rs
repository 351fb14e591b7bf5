//! JSONL records, one patient a line: the schema of `schema/record.schema.json`, read by `halo` and
//! written by `halo-sample`.

use crate::error::{Error, Result};
use crate::record::{Dataset, Demographics, LabValue, Patient, ReadReport, Split, Visit};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    id: Value,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    demographics: Option<Demographics>,
    #[serde(default)]
    labels: Option<Value>,
    visits: Vec<RawVisit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVisit {
    #[serde(default)]
    day: Option<f64>,
    #[serde(default)]
    time: Option<String>,
    codes: Vec<String>,
    #[serde(default)]
    labs: Vec<RawLab>,
    #[serde(default)]
    visit_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    code: String,
    value: Option<f64>,
}

/// Reads a JSONL file of records. Blank lines are ignored and counted in the report's `skipped`; records without
/// visits are counted and left out.
pub fn read_jsonl(path: &Path) -> Result<Dataset> {
    let mut ds = Dataset::default();
    let mut patients = Vec::new();
    for_each_jsonl(path, &mut ds.report, &mut |p| {
        patients.push(p);
        Ok(())
    })?;
    ds.patients = patients;
    Ok(ds)
}

/// [`read_jsonl`] one record at a time: `each` gets every record with visits, in file order, and `report`
/// what was skipped. Only the ids are held (to refuse a duplicate).
pub fn for_each_jsonl(path: &Path, report: &mut ReadReport, each: &mut dyn FnMut(Patient) -> Result<()>) -> Result<()> {
    let file = crate::fsutil::open_maybe_gz(path)?;
    let mut seen_ids = std::collections::HashSet::new();
    let mut reader = BufReader::new(file);
    let mut bytes = Vec::new();
    for lineno in 1.. {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes).map_err(|e| Error::io(path, e))? == 0 {
            break;
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                return Err(Error::line(
                    path,
                    lineno,
                    format!(
                        "not UTF-8 text (invalid byte 0x{:02x} at column {}); JSONL records are UTF-8: convert the \
                         file, e.g. with iconv",
                        bytes[e.valid_up_to()],
                        e.valid_up_to() + 1
                    ),
                ))
            }
        };
        // A byte-order mark, as Windows tools write at the start of a file, is not part of the record.
        let text = if lineno == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        let line = text.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            report.skip("blank lines (ignored)");
            continue;
        }
        let raw: RawRecord =
            serde_json::from_str(line).map_err(|e| Error::line(path, lineno, not_a_record(line, &e)))?;
        let patient = parse_record(raw, path, lineno, report)?;
        if !seen_ids.insert(patient.id.clone()) {
            return Err(Error::line(path, lineno, format!("duplicate id `{}`", patient.id)));
        }
        report.patients += 1;
        if patient.visits.is_empty() {
            report.patients_without_visits += 1;
            continue;
        }
        report.visits += patient.visits.len();
        report.events += patient.visits.iter().map(|v| v.codes.len()).sum::<usize>();
        each(patient)?;
    }
    if report.patients == 0 {
        return Err(Error::file(path, "no records (expected one JSON object a line)"));
    }
    Ok(())
}

/// Why a line is not a record, in the words of the JSONL format: not JSON, JSON but not an object, or an
/// object with a field of the wrong type (serde's message, with its position given as a column).
fn not_a_record(line: &str, e: &serde_json::Error) -> String {
    let kind = match serde_json::from_str::<Value>(line) {
        Err(_) => return format!("not JSON ({e})"),
        Ok(Value::Object(_)) => None,
        Ok(Value::Array(_)) => Some("an array"),
        Ok(Value::String(_)) => Some("a string"),
        Ok(Value::Number(_)) => Some("a number"),
        Ok(Value::Bool(_)) => Some("a boolean"),
        Ok(Value::Null) => Some("null"),
    };
    match kind {
        Some(kind) => format!("expected a record (a JSON object with `id` and `visits`), got {kind}"),
        None => {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            format!("not a record: {message} (column {})", e.column())
        }
    }
}

fn parse_record(raw: RawRecord, path: &Path, line: usize, report: &mut ReadReport) -> Result<Patient> {
    let id = match raw.id {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        other => {
            return Err(Error::line(
                path,
                line,
                format!("`id` must be a string or number, got {other}"),
            ))
        }
    };
    let split = match raw.split.as_deref() {
        None => None,
        Some(s) => Some(
            Split::parse(s)
                .ok_or_else(|| Error::line(path, line, format!("unknown split `{s}` (expected train, val or test)")))?,
        ),
    };
    let mut label_groups = BTreeSet::new();
    let labels = match raw.labels {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => {
            let mut m = BTreeMap::new();
            for n in names {
                let name = n
                    .as_str()
                    .ok_or_else(|| Error::line(path, line, format!("`labels` list must hold label names, got {n}")))?;
                m.insert(name.to_string(), true);
            }
            Some(m)
        }
        Some(Value::Object(map)) => {
            let mut m = BTreeMap::new();
            for (k, v) in &map {
                let present = match v {
                    Value::Bool(b) => *b,
                    Value::Number(n) if n.as_f64() == Some(0.0) => false,
                    Value::Number(n) if n.as_f64() == Some(1.0) => true,
                    // A category: `"GENDER": "F"` is the label `GENDER/F` of the exclusive group `GENDER`.
                    Value::String(value) if !value.is_empty() && !k.is_empty() => {
                        label_groups.insert(k.clone());
                        m.insert(format!("{k}/{value}"), true);
                        continue;
                    }
                    _ => {
                        return Err(Error::line(
                            path,
                            line,
                            format!("label `{k}` is {v}; expected 0 or 1, or a category's value (\"GENDER\": \"F\")"),
                        ))
                    }
                };
                m.insert(k.clone(), present);
            }
            // A declared group holds one value: the one named, and no other set alongside it.
            for group in &label_groups {
                let (prefix, named) = (
                    format!("{group}/"),
                    format!("{group}/{}", map[group].as_str().unwrap_or("")),
                );
                if let Some(other) = m.iter().find(|(k, v)| **v && k.starts_with(&prefix) && **k != named) {
                    return Err(Error::line(
                        path,
                        line,
                        format!(
                            "label group `{group}` is given as \"{group}\": {} but `{}` is also set; a group holds one value",
                            map[group],
                            other.0
                        ),
                    ));
                }
            }
            Some(m)
        }
        Some(other) => {
            return Err(Error::line(
                path,
                line,
                format!("`labels` must be a list of names or a name -> 0/1 map, got {other}"),
            ))
        }
    };
    let mut visits = Vec::with_capacity(raw.visits.len());
    // The span of the default plausible years (about 500): a larger offset is a data error, not a record.
    let max_day = crate::bounds::Bounds::default().max_day_offset();
    for (vi, v) in raw.visits.into_iter().enumerate() {
        if let Some(day) = v.day.filter(|d| d.abs() > max_day) {
            return Err(Error::line(
                path,
                line,
                format!(
                    "visits[{vi}].day is {day}, beyond the plausible {max_day} days (`day` counts days from the \
                     record's first visit; a record spans at most the plausible years)"
                ),
            ));
        }
        if let Some(t) = &v.time {
            if crate::time::parse_time(t).is_none() {
                return Err(Error::line(
                    path,
                    line,
                    format!("visits[{vi}].time `{t}` is not a date or timestamp (expected YYYY-MM-DD[THH:MM:SS])"),
                ));
            }
        }
        let mut labs = Vec::with_capacity(v.labs.len());
        for lab in v.labs {
            match lab.value {
                Some(x) if x.is_finite() => labs.push(LabValue {
                    code: lab.code,
                    value: x,
                }),
                _ => report.non_finite_values += 1,
            }
        }
        visits.push(Visit {
            day: v.day,
            time: v.time,
            codes: v.codes,
            labs,
            visit_type: v.visit_type.filter(|t| !t.is_empty()),
        });
    }
    let mut patient = Patient {
        id,
        split,
        demographics: raw.demographics.unwrap_or_default(),
        labels,
        label_groups,
        visits,
    };
    crate::sort_visits(&mut patient, report);
    Ok(patient)
}

/// Writes one patient as one JSON line.
pub fn write_record<W: Write>(out: &mut W, p: &Patient) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, p)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn a_string_label_declares_a_group_and_a_second_value_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.jsonl");
        let good =
            r#"{"id": "a", "labels": {"GENDER": "F", "diabetes": 1, "GENDER/M": 0}, "visits": [{"codes": ["x"]}]}"#;
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let p = &super::read_jsonl(&path).unwrap().patients[0];
        let labels = p.labels.as_ref().unwrap();
        assert_eq!(labels.get("GENDER/F"), Some(&true));
        assert_eq!(labels.get("GENDER/M"), Some(&false));
        assert_eq!(labels.get("diabetes"), Some(&true));
        assert!(!labels.contains_key("GENDER"));
        assert_eq!(p.label_groups.iter().collect::<Vec<_>>(), ["GENDER"]);

        let bad = r#"{"id": "b", "labels": {"GENDER": "F", "GENDER/M": 1}, "visits": [{"codes": ["x"]}]}"#;
        std::fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
        let err = super::read_jsonl(&path).unwrap_err().to_string();
        assert!(
            err.contains(":2") && err.contains("GENDER/M") && err.contains("one value"),
            "{err}"
        );
        let empty = r#"{"id": "c", "labels": {"GENDER": ""}, "visits": [{"codes": ["x"]}]}"#;
        std::fs::write(&path, format!("{empty}\n")).unwrap();
        let err = super::read_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("GENDER") && err.contains("expected 0 or 1"), "{err}");
    }

    #[test]
    fn visit_types_read_and_write_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.jsonl");
        let line = r#"{"id": "a", "visits": [{"codes": ["x"], "visit_type": "9201"}, {"codes": ["y"], "visit_type": ""}, {"codes": ["z"]}]}"#;
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let p = &super::read_jsonl(&path).unwrap().patients[0];
        let types: Vec<Option<&str>> = p.visits.iter().map(|v| v.visit_type.as_deref()).collect();
        assert_eq!(types, [Some("9201"), None, None]);
        let mut written = Vec::new();
        super::write_record(&mut written, p).unwrap();
        let written = String::from_utf8(written).unwrap();
        assert_eq!(written.matches("\"visit_type\":\"9201\"").count(), 1, "{written}");
        assert_eq!(written.matches("visit_type").count(), 1, "{written}");
    }

    #[test]
    fn gzipped_jsonl_reads_like_plain() {
        let tmp = tempfile::tempdir().unwrap();
        let text = "{\"id\": \"a\", \"visits\": [{\"codes\": [\"x\", \"y\"]}]}\n{\"id\": 2, \"visits\": [{\"day\": 3, \"codes\": [\"z\"]}]}\n";
        let plain = tmp.path().join("r.jsonl");
        std::fs::write(&plain, text).unwrap();
        let gz = tmp.path().join("r.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        assert_eq!(crate::Format::detect(&gz).unwrap(), crate::Format::Jsonl);
        let (a, b) = (super::read_jsonl(&plain).unwrap(), super::read_jsonl(&gz).unwrap());
        assert_eq!(a.patients, b.patients);
        assert_eq!(b.patients.len(), 2);
    }

    #[test]
    fn a_byte_order_mark_and_crlf_lines_read_like_plain_utf8() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain.jsonl");
        std::fs::write(&plain, "{\"id\": \"a\", \"visits\": [{\"codes\": [\"x\"]}]}\n{\"id\": \"b\", \"visits\": [{\"codes\": [\"y\"]}]}\n").unwrap();
        let windows = tmp.path().join("windows.jsonl");
        std::fs::write(&windows, "\u{feff}{\"id\": \"a\", \"visits\": [{\"codes\": [\"x\"]}]}\r\n{\"id\": \"b\", \"visits\": [{\"codes\": [\"y\"]}]}\r\n").unwrap();
        assert_eq!(
            super::read_jsonl(&windows).unwrap().patients,
            super::read_jsonl(&plain).unwrap().patients
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("latin1.jsonl");
        let mut bytes = b"{\"id\": \"a\", \"visits\": [{\"codes\": [\"x\"]}]}\n".to_vec();
        bytes.extend_from_slice(b"{\"id\": \"b\", \"visits\": [{\"codes\": [\"caf\xe9\"]}]}\n");
        std::fs::write(&path, bytes).unwrap();
        let err = super::read_jsonl(&path).unwrap_err().to_string();
        assert!(
            err.contains("latin1.jsonl:2: not UTF-8 text (invalid byte 0xe9 at column 39)"),
            "{err}"
        );
    }
    #[test]
    fn implausible_day_offsets_are_refused_and_blank_lines_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("days.jsonl");
        let record =
            |id: &str, day: &str| format!("{{\"id\": \"{id}\", \"visits\": [{{\"day\": {day}, \"codes\": [\"x\"]}}]}}");
        // Within the plausible years' span (501 years of 366 days), in either direction: read.
        let max = crate::bounds::Bounds::default().max_day_offset();
        assert_eq!(max, 501.0 * 366.0);
        std::fs::write(
            &path,
            format!("{}\n\n  \n{}\n\n", record("a", "183366"), record("b", "-183366")),
        )
        .unwrap();
        let ds = super::read_jsonl(&path).unwrap();
        assert_eq!(ds.patients.len(), 2);
        assert_eq!(ds.report.skipped.get("blank lines (ignored)"), Some(&3));
        for day in ["1e300", "183367", "-1e9"] {
            std::fs::write(&path, format!("{}\n{}\n", record("a", "0"), record("b", day))).unwrap();
            let err = super::read_jsonl(&path).unwrap_err().to_string();
            assert!(
                err.contains("days.jsonl:2") && err.contains("visits[0].day") && err.contains("plausible"),
                "{err}"
            );
        }
    }
}
