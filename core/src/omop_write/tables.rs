//! The OMOP CDM 5.4 tables the writer fills: their columns in the DDL's order and what goes in each.

use crate::record::DemographicCategory::{self, Ethnicity, Race, Sex};

/// Type concept of every row: 32817 "EHR" (the records were learned from EHR data).
pub(super) const EHR_TYPE_CONCEPT: i64 = 32817;
/// `cdm_version_concept_id` of OMOP CDM 5.4.
pub(super) const CDM_54_CONCEPT: i64 = 756265;
/// Width of every `*_source_value` column the writer fills (the DDL's `varchar(50)`); a longer value is cut
/// to it, since PostgreSQL refuses to load the row (the model keeps the whole code).
pub const SOURCE_VALUE_WIDTH: usize = 50;

/// `value` cut to [`SOURCE_VALUE_WIDTH`] characters (varchar counts characters), and whether it was cut.
pub fn fit_source_value(value: &str) -> (&str, bool) {
    match value.char_indices().nth(SOURCE_VALUE_WIDTH) {
        Some((end, _)) => (&value[..end], true),
        None => (value, false),
    }
}

/// The largest id the DDL's `integer` columns hold.
pub(super) const MAX_ID: u64 = i32::MAX as u64;

/// Standard concepts of demographic values as sources commonly spell them (matched case-insensitively).
pub const DEMOGRAPHIC_CONCEPTS: &[(DemographicCategory, &str, i64)] = &[
    (Sex, "m", 8507),
    (Sex, "male", 8507),
    (Sex, "f", 8532),
    (Sex, "female", 8532),
    (Race, "white", 8527),
    (Race, "black", 8516),
    (Race, "black or african american", 8516),
    (Race, "asian", 8515),
    (Race, "native", 8657),
    (Race, "american indian or alaska native", 8657),
    (Race, "hawaiian", 8557),
    (Race, "native hawaiian or other pacific islander", 8557),
    (Ethnicity, "hispanic", 38003563),
    (Ethnicity, "hispanic or latino", 38003563),
    (Ethnicity, "nonhispanic", 38003564),
    (Ethnicity, "not hispanic or latino", 38003564),
];

/// The clinical event tables a code can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventTable {
    Condition,
    Drug,
    Procedure,
    Measurement,
    Observation,
}

impl EventTable {
    pub const ALL: [EventTable; 5] = [
        EventTable::Condition,
        EventTable::Drug,
        EventTable::Procedure,
        EventTable::Measurement,
        EventTable::Observation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventTable::Condition => "condition_occurrence",
            EventTable::Drug => "drug_exposure",
            EventTable::Procedure => "procedure_occurrence",
            EventTable::Measurement => "measurement",
            EventTable::Observation => "observation",
        }
    }

    /// The code prefix of the table's concepts (`condition/201826`).
    pub fn domain(self) -> &'static str {
        match self {
            EventTable::Condition => "condition",
            EventTable::Drug => "drug",
            EventTable::Procedure => "procedure",
            EventTable::Measurement => "measurement",
            EventTable::Observation => "observation",
        }
    }

    /// Whether the table has `value_as_number`.
    pub fn has_value(self) -> bool {
        matches!(self, EventTable::Measurement | EventTable::Observation)
    }

    pub(super) fn from_prefix(prefix: &str) -> Option<EventTable> {
        let p = prefix.to_ascii_lowercase();
        Some(match p.as_str() {
            "condition" | "diagnosis" | "dx" => EventTable::Condition,
            "drug" | "medication" | "rx" => EventTable::Drug,
            "procedure" | "px" => EventTable::Procedure,
            "measurement" | "lab" => EventTable::Measurement,
            "observation" => EventTable::Observation,
            _ => return None,
        })
    }

    /// Columns in the DDL's order, each with what the writer puts there.
    pub(super) fn columns(self) -> &'static [(&'static str, Slot)] {
        use Slot::*;
        match self {
            EventTable::Condition => &[
                ("condition_occurrence_id", Id),
                ("person_id", Person),
                ("condition_concept_id", Concept),
                ("condition_start_date", Date),
                ("condition_start_datetime", DateTime),
                ("condition_end_date", Null),
                ("condition_end_datetime", Null),
                ("condition_type_concept_id", TypeConcept),
                ("condition_status_concept_id", Null),
                ("stop_reason", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("condition_source_value", Source),
                ("condition_source_concept_id", Zero),
                ("condition_status_source_value", Null),
            ],
            EventTable::Drug => &[
                ("drug_exposure_id", Id),
                ("person_id", Person),
                ("drug_concept_id", Concept),
                ("drug_exposure_start_date", Date),
                ("drug_exposure_start_datetime", DateTime),
                // NOT NULL in the DDL; the model has no durations, so the exposure ends the day it starts.
                ("drug_exposure_end_date", Date),
                ("drug_exposure_end_datetime", Null),
                ("verbatim_end_date", Null),
                ("drug_type_concept_id", TypeConcept),
                ("stop_reason", Null),
                ("refills", Null),
                ("quantity", Null),
                ("days_supply", Null),
                ("sig", Null),
                ("route_concept_id", Null),
                ("lot_number", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("drug_source_value", Source),
                ("drug_source_concept_id", Zero),
                ("route_source_value", Null),
                ("dose_unit_source_value", Null),
            ],
            EventTable::Procedure => &[
                ("procedure_occurrence_id", Id),
                ("person_id", Person),
                ("procedure_concept_id", Concept),
                ("procedure_date", Date),
                ("procedure_datetime", DateTime),
                ("procedure_end_date", Null),
                ("procedure_end_datetime", Null),
                ("procedure_type_concept_id", TypeConcept),
                ("modifier_concept_id", Null),
                ("quantity", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("procedure_source_value", Source),
                ("procedure_source_concept_id", Zero),
                ("modifier_source_value", Null),
            ],
            EventTable::Measurement => &[
                ("measurement_id", Id),
                ("person_id", Person),
                ("measurement_concept_id", Concept),
                ("measurement_date", Date),
                ("measurement_datetime", DateTime),
                ("measurement_time", Null),
                ("measurement_type_concept_id", TypeConcept),
                ("operator_concept_id", Null),
                ("value_as_number", Value),
                ("value_as_concept_id", Null),
                ("unit_concept_id", Null),
                ("range_low", Null),
                ("range_high", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("measurement_source_value", Source),
                ("measurement_source_concept_id", Zero),
                ("unit_source_value", Null),
                ("unit_source_concept_id", Null),
                ("value_source_value", Null),
                ("measurement_event_id", Null),
                ("meas_event_field_concept_id", Null),
            ],
            EventTable::Observation => &[
                ("observation_id", Id),
                ("person_id", Person),
                ("observation_concept_id", Concept),
                ("observation_date", Date),
                ("observation_datetime", DateTime),
                ("observation_type_concept_id", TypeConcept),
                ("value_as_number", Value),
                ("value_as_string", Null),
                ("value_as_concept_id", Null),
                ("qualifier_concept_id", Null),
                ("unit_concept_id", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("observation_source_value", Source),
                ("observation_source_concept_id", Zero),
                ("unit_source_value", Null),
                ("qualifier_source_value", Null),
                ("value_source_value", Null),
                ("observation_event_id", Null),
                ("obs_event_field_concept_id", Null),
            ],
        }
    }
}

/// What an event table's column holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Id,
    Person,
    Concept,
    Date,
    DateTime,
    TypeConcept,
    Visit,
    Source,
    Value,
    Zero,
    Null,
}

pub(super) const PERSON_COLUMNS: &[&str] = &[
    "person_id",
    "gender_concept_id",
    "year_of_birth",
    "month_of_birth",
    "day_of_birth",
    "birth_datetime",
    "race_concept_id",
    "ethnicity_concept_id",
    "location_id",
    "provider_id",
    "care_site_id",
    "person_source_value",
    "gender_source_value",
    "gender_source_concept_id",
    "race_source_value",
    "race_source_concept_id",
    "ethnicity_source_value",
    "ethnicity_source_concept_id",
];
pub(super) const PERIOD_COLUMNS: &[&str] = &[
    "observation_period_id",
    "person_id",
    "observation_period_start_date",
    "observation_period_end_date",
    "period_type_concept_id",
];
pub(super) const VISIT_COLUMNS: &[&str] = &[
    "visit_occurrence_id",
    "person_id",
    "visit_concept_id",
    "visit_start_date",
    "visit_start_datetime",
    "visit_end_date",
    "visit_end_datetime",
    "visit_type_concept_id",
    "provider_id",
    "care_site_id",
    "visit_source_value",
    "visit_source_concept_id",
    "admitted_from_concept_id",
    "admitted_from_source_value",
    "discharged_to_concept_id",
    "discharged_to_source_value",
    "preceding_visit_occurrence_id",
];
pub(super) const DEATH_COLUMNS: &[&str] = &[
    "person_id",
    "death_date",
    "death_datetime",
    "death_type_concept_id",
    "cause_concept_id",
    "cause_source_value",
    "cause_source_concept_id",
];
pub(super) const CDM_SOURCE_COLUMNS: &[&str] = &[
    "cdm_source_name",
    "cdm_source_abbreviation",
    "cdm_holder",
    "source_description",
    "source_documentation_reference",
    "cdm_etl_reference",
    "source_release_date",
    "cdm_release_date",
    "cdm_version",
    "cdm_version_concept_id",
    "vocabulary_version",
];
