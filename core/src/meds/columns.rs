//! The MEDS columns of a parquet file, found by name, and typed access to them batch by batch: columns whose
//! type differs from the MEDS schema's only in width or encoding are converted here.

use super::*;

/// The MEDS columns of one file: where they are and how to read them.
pub(super) struct MedsColumns {
    pub(super) subject: usize,
    pub(super) time: usize,
    pub(super) code: usize,
    pub(super) value: Option<usize>,
}

impl MedsColumns {
    pub(super) fn locate(schema: &Schema, path: &Path) -> Result<MedsColumns> {
        let required = |name: &str| {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::field(
                    path,
                    name,
                    format!("missing MEDS column (the file has {})", names.join(", ")),
                )
            })
        };
        let columns = MedsColumns {
            subject: required("subject_id")?,
            time: required("time")?,
            code: required("code")?,
            value: schema.index_of("numeric_value").ok(),
        };
        let check = |index: usize, ok: fn(&DataType) -> bool, expected: &str| {
            let field = schema.field(index);
            if ok(field.data_type()) {
                Ok(())
            } else {
                Err(Error::field(
                    path,
                    field.name(),
                    format!("has type {}, expected {expected}", field.data_type()),
                ))
            }
        };
        check(columns.subject, |t| t.is_integer(), "int64")?;
        check(
            columns.time,
            |t| {
                matches!(
                    t,
                    DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null
                )
            },
            "timestamp[us]",
        )?;
        check(
            columns.code,
            |t| match t {
                DataType::Dictionary(_, values) => matches!(**values, DataType::Utf8 | DataType::LargeUtf8),
                t => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
            },
            "string (utf8)",
        )?;
        if let Some(v) = columns.value {
            check(
                v,
                |t| matches!(t, DataType::Float32 | DataType::Float64 | DataType::Null),
                "float32",
            )?;
        }
        Ok(columns)
    }

    pub(super) fn indices(&self) -> Vec<usize> {
        [Some(self.subject), Some(self.time), Some(self.code), self.value]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Typed access to one record batch's MEDS columns (after projection, found by name). Columns whose type
/// only differs from the MEDS schema's in width or encoding (int32 subject ids, date-only times,
/// dictionary-encoded codes as polars writes categoricals) are converted here.
pub(super) struct BatchView<'a> {
    pub(super) subject: Int64Array,
    pub(super) time: TimeColumn,
    pub(super) code: CodeColumn<'a>,
    pub(super) value: ValueColumn<'a>,
}

pub(super) enum TimeColumn {
    AllNull,
    /// Raw values and the factor that turns them into microseconds (negative: a divisor).
    Values(Int64Array, i64),
}

pub(super) enum CodeColumn<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    View(&'a StringViewArray),
    /// Dictionary-encoded: each row's key into the values (`None` for a null row).
    Dictionary(Vec<Option<usize>>, Box<CodeColumn<'a>>),
}

pub(super) enum ValueColumn<'a> {
    Absent,
    F32(&'a Float32Array),
    F64(&'a Float64Array),
}

impl<'a> BatchView<'a> {
    /// The column types were checked by [`MedsColumns::locate`].
    pub(super) fn new(batch: &'a RecordBatch) -> BatchView<'a> {
        let column = |name: &str| batch.column_by_name(name);
        BatchView {
            subject: subject_column(column("subject_id").expect("checked")),
            time: TimeColumn::new(column("time").expect("checked")),
            code: CodeColumn::new(column("code").expect("checked")),
            value: column("numeric_value").map_or(ValueColumn::Absent, ValueColumn::new),
        }
    }
}

/// Subject ids of any integer type as int64 (unsigned ids beyond int64 become null, reported as such).
pub(super) fn subject_column(array: &ArrayRef) -> Int64Array {
    use arrow_array::types::{Int16Type, Int32Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
    macro_rules! widen {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.and_then(|x| i64::try_from(x).ok()))
                .collect()
        };
    }
    match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().clone(),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int8 => widen!(Int8Type),
        DataType::UInt64 => widen!(UInt64Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt8 => widen!(UInt8Type),
        // `locate` admits integer types only.
        _ => Int64Array::new_null(array.len()),
    }
}

impl TimeColumn {
    pub(super) fn new(array: &ArrayRef) -> TimeColumn {
        let raw = |a: Int64Array, factor| TimeColumn::Values(a, factor);
        match array.data_type() {
            DataType::Date32 => raw(
                array
                    .as_primitive::<arrow_array::types::Date32Type>()
                    .unary::<_, Int64Type>(i64::from),
                86_400 * MICROS_PER_SECOND,
            ),
            DataType::Date64 => raw(
                array
                    .as_primitive::<arrow_array::types::Date64Type>()
                    .reinterpret_cast::<Int64Type>(),
                1000,
            ),
            DataType::Timestamp(TimeUnit::Second, _) => raw(
                array
                    .as_primitive::<TimestampSecondType>()
                    .reinterpret_cast::<Int64Type>(),
                MICROS_PER_SECOND,
            ),
            DataType::Timestamp(TimeUnit::Millisecond, _) => raw(
                array
                    .as_primitive::<TimestampMillisecondType>()
                    .reinterpret_cast::<Int64Type>(),
                1000,
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => raw(
                array
                    .as_primitive::<TimestampMicrosecondType>()
                    .reinterpret_cast::<Int64Type>(),
                1,
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => raw(
                array
                    .as_primitive::<TimestampNanosecondType>()
                    .reinterpret_cast::<Int64Type>(),
                -1000,
            ),
            _ => TimeColumn::AllNull,
        }
    }

    /// Microseconds since the epoch, or `None` for a static row.
    pub(super) fn get(&self, i: usize) -> Option<i64> {
        match self {
            TimeColumn::AllNull => None,
            TimeColumn::Values(a, _) if a.is_null(i) => None,
            TimeColumn::Values(a, factor) if *factor < 0 => Some(a.value(i).div_euclid(-factor)),
            TimeColumn::Values(a, factor) => Some(a.value(i).saturating_mul(*factor)),
        }
    }
}

impl<'a> CodeColumn<'a> {
    pub(super) fn new(array: &'a ArrayRef) -> CodeColumn<'a> {
        match array.data_type() {
            DataType::LargeUtf8 => CodeColumn::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => CodeColumn::View(array.as_string_view()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                let keys = dict.normalized_keys();
                let rows = (0..array.len()).map(|i| (!array.is_null(i)).then(|| keys[i])).collect();
                CodeColumn::Dictionary(rows, Box::new(CodeColumn::new(dict.values())))
            }
            _ => CodeColumn::Utf8(array.as_string::<i32>()),
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            CodeColumn::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::LargeUtf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::View(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::Dictionary(rows, values) => rows[i].and_then(|k| values.get(k)),
        }
    }
}

impl<'a> ValueColumn<'a> {
    pub(super) fn new(array: &'a ArrayRef) -> ValueColumn<'a> {
        match array.data_type() {
            DataType::Float32 => ValueColumn::F32(array.as_primitive::<Float32Type>()),
            DataType::Float64 => ValueColumn::F64(array.as_primitive::<Float64Type>()),
            _ => ValueColumn::Absent,
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<f64> {
        match self {
            ValueColumn::Absent => None,
            ValueColumn::F32(a) => (!a.is_null(i)).then(|| widen(a.value(i))),
            ValueColumn::F64(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

/// Widens a float32 through its shortest decimal form, so that `0.1f32` becomes `0.1`.
pub(super) fn widen(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
}
