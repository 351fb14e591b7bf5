//! The training shares the sampling calibration aims at.

use super::*;

#[test]
fn first_calendar_shares_count_each_decades_first_visits_and_leave_out_cells_of_few_patients() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = crate::manifest::Manifest::read(&root.join("fixtures/tiny-model")).unwrap();
    let enc = Encoding {
        options: EncodingOptions {
            min_patients: 3,
            ..manifest.encoding.options.clone()
        },
        ..manifest.encoding
    };
    assert!(enc.has_first_visit_dates());
    let data = crate::read_dataset(&root.join("fixtures/tiny-omop"), None, &Default::default()).unwrap();
    let shares = TrainingShares::count(&enc, &data.patients).first_calendar;

    // By hand: per birth decade value, the calendar bucket of each patient's first encoded visit.
    let decades = enc
        .demographic_categories
        .iter()
        .find(|c| c.name == "birth_year")
        .unwrap();
    let calendar_len = enc
        .visit_groups
        .iter()
        .find(|g| g.name == VisitGroup::CALENDAR)
        .unwrap()
        .len;
    let mut counts = vec![vec![0usize; calendar_len]; decades.len];
    let index = enc.index();
    for p in &data.patients {
        let Some(decade) = enc
            .demographic_labels(p, &index)
            .into_iter()
            .map(|j| j as usize - enc.code_vocab_size)
            .find(|j| (decades.first..decades.first + decades.len).contains(j))
        else {
            continue;
        };
        let first = enc.options.first_encoded_visit(p.visits.len());
        let year = crate::time::visit_years(p)[first].unwrap();
        counts[decade - decades.first][enc.calendar_bucket(year)] += 1;
    }
    assert_eq!(shares.len(), decades.len);
    let (mut published, mut withheld) = (0, 0);
    for (row, counts) in shares.iter().zip(&counts) {
        let total: usize = counts.iter().sum();
        for (share, &n) in row.iter().zip(counts) {
            if total >= 3 && n >= 3 {
                assert_eq!(*share, Some(n as f64 / total as f64));
                published += 1;
            } else {
                assert_eq!(*share, None, "{n} of {total} patients");
                withheld += usize::from(n > 0);
            }
        }
    }
    assert!(
        published > 2 && withheld > 2,
        "{published} published, {withheld} withheld"
    );
}
