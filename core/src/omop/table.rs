//! Finding an OMOP folder's tables (any case, .csv/.tsv/.txt, gzipped or not) and reading one row by row:
//! the delimiter read off the header, columns found by name, ids and dates parsed with file, line and column
//! named on error.

use super::*;

/// The table name of a file name (`PERSON.csv.gz` -> `person`), when it has a table file's extension.
pub(super) fn table_stem(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let plain = name.strip_suffix(".gz").unwrap_or(&name);
    [".csv", ".tsv", ".txt"]
        .iter()
        .find_map(|ext| plain.strip_suffix(ext))
        .map(str::to_string)
}

/// Whether `name` is a file of OMOP table `table` (any case, any accepted extension).
pub fn is_table_file(name: &str, table: &str) -> bool {
    table_stem(name).as_deref() == Some(table)
}

/// The CSV files of a folder, by lowercase file stem.
pub(super) struct TableFiles {
    pub(super) by_stem: HashMap<String, Vec<PathBuf>>,
}

impl TableFiles {
    pub(super) fn scan(dir: &Path) -> Result<TableFiles> {
        if !dir.is_dir() {
            return Err(Error::file(
                dir,
                "not a folder (expected an OMOP CDM folder with person.csv, visit_occurrence.csv, ...)",
            ));
        }
        let mut by_stem: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = match path.file_name() {
                Some(n) => n.to_string_lossy().to_ascii_lowercase(),
                None => continue,
            };
            if let Some(stem) = table_stem(&name) {
                if path.is_file() {
                    by_stem.entry(stem).or_default().push(path);
                }
            }
        }
        Ok(TableFiles { by_stem })
    }

    pub(super) fn optional(&self, table: &str) -> Result<Option<PathBuf>> {
        match self.by_stem.get(table).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.clone())),
            Some(many) => Err(Error::file(
                &many[0],
                format!(
                    "table {table} has {} files (names differing only in case or extension); keep one",
                    many.len()
                ),
            )),
        }
    }

    pub(super) fn required(&self, dir: &Path, table: &str) -> Result<PathBuf> {
        self.optional(table)?.ok_or_else(|| {
            Error::file(
                &dir.join(format!("{table}.csv")),
                format!("missing required OMOP table {table}.csv (file names match case-insensitively)"),
            )
        })
    }
}

/// The field delimiter of a table, from its header line: tab, comma, pipe or semicolon, whichever occurs
/// most (exports from database tools are often tab- or pipe-delimited whatever the file name says).
pub(super) fn sniff_delimiter(path: &Path) -> Result<u8> {
    let mut header = Vec::new();
    let mut reader = BufReader::new(open_maybe_gz(path)?);
    reader.read_until(b'\n', &mut header).map_err(|e| Error::io(path, e))?;
    if header.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::line(
            path,
            1,
            "is empty: expected a header line naming the table's columns (e.g. person_id,year_of_birth,...)",
        ));
    }
    let count = |d: u8| header.iter().filter(|&&b| b == d).count();
    let delimiters = [b',', b'\t', b'|', b';'];
    if delimiters.iter().all(|&d| count(d) == 0) {
        let shown: String = String::from_utf8_lossy(&header).trim().chars().take(80).collect();
        return Err(Error::line(
            path,
            1,
            format!(
                "the header `{shown}` has no comma, tab, pipe or semicolon: expected one of those as the field \
                 delimiter (convert the table, e.g. from colons, first)"
            ),
        ));
    }
    Ok(delimiters
        .into_iter()
        .max_by_key(|d| (count(*d), *d == b','))
        .unwrap_or(b','))
}

/// A CSV file read row by row, with its columns found by header name.
pub(super) struct CsvTable {
    pub(super) path: PathBuf,
    pub(super) reader: csv::Reader<BufReader<Box<dyn Read>>>,
    pub(super) columns: HashMap<String, usize>,
    pub(super) width: usize,
    pub(super) record: csv::StringRecord,
}

impl CsvTable {
    pub(super) fn open(path: &Path) -> Result<CsvTable> {
        let delimiter = sniff_delimiter(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(BufReader::new(open_maybe_gz(path)?));
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let mut columns = HashMap::new();
        for (i, name) in headers.iter().enumerate() {
            let name = name.trim_start_matches('\u{feff}').trim().to_ascii_lowercase();
            columns.entry(name).or_insert(i);
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            reader,
            columns,
            width: headers.len(),
            record: csv::StringRecord::new(),
        })
    }

    pub(super) fn column(&self, name: &str) -> Result<usize> {
        self.optional_column(name).ok_or_else(|| {
            Error::field(
                &self.path,
                name,
                "missing required column (the header names are matched case-insensitively)",
            )
        })
    }

    pub(super) fn optional_column(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }

    /// The columns whose (lowercase) name ends in one of `suffixes`, with their indices, in header order.
    pub(super) fn columns_ending(&self, suffixes: &[&str]) -> Vec<(String, usize)> {
        let mut found: Vec<(String, usize)> = self
            .columns
            .iter()
            .filter(|(name, _)| suffixes.iter().any(|s| name.ends_with(s)))
            .map(|(name, &i)| (name.clone(), i))
            .collect();
        found.sort_by_key(|c| c.1);
        found
    }

    /// Advances to the next row; returns its line number (1-based, the header is line 1), or `None` at
    /// the end. A row with a different number of fields than the header is an error.
    pub(super) fn next_row(&mut self) -> Result<Option<usize>> {
        let more = self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| csv_error(&self.path, e))?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line() as usize);
        if self.record.len() != self.width {
            return Err(Error::line(
                &self.path,
                line,
                format!("{} fields, expected {} as in the header", self.record.len(), self.width),
            ));
        }
        Ok(Some(line))
    }

    /// Field `col` of the current row, trimmed.
    pub(super) fn get(&self, col: usize) -> &str {
        self.record.get(col).unwrap_or("").trim()
    }

    /// Field of an optional column; empty when the column is absent.
    pub(super) fn get_opt(&self, col: Option<usize>) -> &str {
        col.map_or("", |c| self.get(c))
    }
}

pub(super) fn csv_error(path: &Path, e: csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::line(path, p.line() as usize, e.to_string()),
        None => Error::file(path, e.to_string()),
    }
}

/// Parses a required integer id.
pub(super) fn parse_id(value: &str, path: &Path, line: usize, column: &str) -> Result<i64> {
    value
        .parse()
        .map_err(|_| Error::line(path, line, format!("`{column}` is `{value}`, expected an integer id")))
}

/// Parses an optional integer id: empty is `None`.
pub(super) fn parse_optional_id(value: &str, path: &Path, line: usize, column: &str) -> Result<Option<i64>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(value, path, line, column).map(Some)
    }
}

/// Parses a date or datetime field; empty is `None`.
pub(super) fn parse_datetime(value: &str, path: &Path, line: usize, column: &str) -> Result<Option<NaiveDateTime>> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_time(value.trim_end_matches('Z')).map(Some).ok_or_else(|| {
        Error::line(
            path,
            line,
            format!("`{column}` is `{value}`, expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"),
        )
    })
}
