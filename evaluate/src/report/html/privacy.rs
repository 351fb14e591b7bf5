//! `report.html`'s privacy and utility sections.

use super::{explain, num, opt, pct, table};
use crate::plot::escape;
use crate::privacy::{AttackResult, Privacy};
use crate::utility::UtilityResult;
use std::fmt::Write;

fn attack_row(name: &str, a: Option<&AttackResult>) -> Vec<String> {
    match a {
        None => vec![name.into(), "–".into(), "–".into(), "–".into(), "–".into()],
        Some(a) => vec![
            name.into(),
            format!("{} + {}", a.members, a.non_members),
            num(a.accuracy),
            opt(a.precision),
            num(a.recall),
        ],
    }
}

pub(super) fn privacy_section(o: &mut String, p: &Privacy, model_privacy: &[String]) {
    o.push_str("<h2>Privacy</h2>");
    if let Some((headline, mechanisms)) = model_privacy.split_first() {
        let _ = write!(o, "<h3>Guarantee</h3><p>The model was {}.</p>", escape(headline));
        if !mechanisms.is_empty() {
            o.push_str("<ul>");
            for m in mechanisms {
                let _ = write!(o, "<li>{}</li>", escape(m.trim()));
            }
            o.push_str("</ul>");
        }
        explain(
            o,
            "A guarantee stated by the model's privacy ledger (in its signed manifest), not measured here: the \
             attacks below measure what the synthetic records and the model leak in practice.",
        );
    }
    o.push_str("<h3>Membership inference</h3>");
    table(
        o,
        &["attack", "members + non-members", "accuracy", "precision", "recall"],
        &[
            attack_row(
                &format!(
                    "dataset (Hamming distance to nearest of {} synthetic records)",
                    p.membership.synthetic_reference
                ),
                p.membership.dataset_attack.as_ref(),
            ),
            attack_row("model (log-likelihood)", p.membership.model_attack.as_ref()),
        ],
    );
    explain(o, "Training records (members) and test records (non-members) in equal numbers; the attacker calls a record a member when it is closer than the median to a synthetic record (dataset attack) or more likely than the median under the model (model attack). Good: accuracy near 0.5, a coin flip.");

    o.push_str("<h3>Attribute inference</h3>");
    match &p.attribute {
        None => o.push_str("<p>Not run (no records to attack).</p>"),
        Some(a) => {
            table(
                o,
                &["neighbours from", "F1"],
                &[
                    vec!["synthetic data".into(), opt(a.f1_synthetic)],
                    vec!["real test split (baseline)".into(), opt(a.f1_test_baseline)],
                ],
            );
            explain(o, &format!("{} training records attacked; the attacker knows their labels ({}) and which of the {} most common codes they have, takes the {} nearest of {} records, and guesses the remaining codes. Good: synthetic F1 not above the baseline (the synthetic data tells no more than other real patients would).", a.attacked, a.known_labels, a.known_codes, a.k, a.reference));
        }
    }

    o.push_str("<h3>Nearest-neighbour adversarial accuracy</h3>");
    match &p.adversarial {
        None => o.push_str("<p>Not run (fewer than two records in a set).</p>"),
        Some(a) => {
            table(
                o,
                &["", "value"],
                &[
                    vec!["AA_TS (training vs synthetic)".into(), num(a.aa_train_synthetic)],
                    vec!["AA_ES (test vs synthetic)".into(), num(a.aa_test_synthetic)],
                    vec!["privacy loss AA_ES − AA_TS".into(), num(a.privacy_loss)],
                ],
            );
            explain(o, &format!("AA = 0.5 · (share of real records whose nearest neighbour is real rather than synthetic + share of synthetic records whose nearest neighbour is synthetic), {} records per set, leave-one-out within a set. AA near 0.5: synthetic records are indistinguishable from real ones (near 1: easily told apart). Good privacy loss: near 0 (a positive loss means the synthetic data sits closer to the training records than to unseen ones).", a.n));
        }
    }

    o.push_str("<h3>Exact copies</h3>");
    let e = &p.exact_copies;
    table(
        o,
        &["records equal to a training record", "count", "rate"],
        &[
            vec![
                format!("synthetic (of {})", e.synthetic_records),
                e.synthetic_copies.to_string(),
                pct(e.synthetic_rate),
            ],
            vec![
                format!("real test (of {})", e.test_records),
                e.test_copies.to_string(),
                pct(e.test_rate),
            ],
        ],
    );
    explain(o, "A record equals a training record when its visits hold the same codes in the same order. Real test records match training records by chance (short, common records); good: the synthetic rate not above the test rate.");
    if !p.notes.is_empty() {
        o.push_str("<ul>");
        for n in &p.notes {
            let _ = write!(o, "<li>{}</li>", escape(n));
        }
        o.push_str("</ul>");
    }
}

pub(super) fn utility_section(o: &mut String, u: &[UtilityResult]) {
    o.push_str("<h2>Utility</h2>");
    if u.is_empty() {
        o.push_str("<p>Not run.</p>");
        return;
    }
    let rows: Vec<Vec<String>> = u
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                format!("{}/{}/{}", r.n_train, r.n_val, r.n_test),
                num(r.real.accuracy),
                num(r.synthetic.accuracy),
                num(r.real.f1),
                num(r.synthetic.f1),
                opt(r.real.auroc),
                opt(r.synthetic.auroc),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        o,
        &[
            "label",
            "train/val/test",
            "accuracy real",
            "accuracy synthetic",
            "F1 real",
            "F1 synthetic",
            "AUROC real",
            "AUROC synthetic",
            "note",
        ],
        &rows,
    );
    explain(o, "A classifier trained on balanced real training records and one trained on balanced synthetic records, both tested on the same balanced real test records. Good: synthetic scores close to the real ones.");
}
