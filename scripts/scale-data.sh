#!/usr/bin/env bash
# Test data at hospital size: replicates the Synthea-1k OMOP CDM tables N times into OUT, so that a reader sees
# N x 1,130 distinct persons (issue 27's benchmarks; docs/scale-out.md, "Test data at hospital size").
#   scripts/scale-data.sh N OUT [SRC]      (SRC defaults to data/synthea1k-omop)
# Copy k (0..N-1) of every row:
#  - key ids (person, visit, event, observation period, preceding visit, visit detail and event-link ids) get
#    k * STRIDE added, STRIDE the smallest power of ten above every such id of the source (one stride for all
#    columns, so a reference such as visit_occurrence_id in an event table moves with the row it names);
#    empty and 0 (no reference) stay as they are; concept, provider, care site and location ids never change;
#  - every date (*_date, *_datetime, and *_time columns holding a date) and the person's birth (year, month,
#    day, birth_datetime) move by the same whole number of days for all tables of a copy,
#    ((7k + 182) mod 365) - 182, so visits and events stay aligned; formats are kept (only the YYYY-MM-DD part
#    changes, a time after it is kept);
#  - person_source_value and visit_source_value get a "-k" suffix.
# Copy 0 is the source unchanged (no shift, no suffix), so N=1 reproduces the tables byte for byte, except
# that every line ends as the header does (CRLF or LF), a last line without an end included.
# CONCEPT.csv, when present, is copied once as it is (vocabulary); other tables (eras) are not copied.
# Streams with mawk (about 40 MB/s on one core here; Python's csv module does 22 MB/s), in constant memory
# whatever N; fields are split at commas, so a replicated table with a quote character is refused. OUT is
# written as a hidden folder beside it and renamed at the end: nothing half-written appears if interrupted.
set -euo pipefail

usage() { echo "usage: scripts/scale-data.sh N OUT [SRC]   (N copies of SRC's OMOP tables, default SRC data/synthea1k-omop)" >&2; }
die() { echo "scale-data: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -eq 2 || $# -eq 3 ]] || { usage; exit 2; }
copies="$1"; out="$2"; src="${3:-$root/data/synthea1k-omop}"
[[ "$copies" =~ ^[1-9][0-9]{0,5}$ ]] || { usage; die "N must be a positive integer (at most 999999), got '$copies'"; }
[[ -d "$src" ]] || die "source folder $src does not exist (expected the Synthea-1k OMOP tables: PERSON.csv, VISIT_OCCURRENCE.csv, ...)"
if [[ -e "$out" || -L "$out" ]]; then
  [[ -d "$out" && ! -L "$out" ]] || die "OUT $out exists and is not a folder"
  [[ -z "$(ls -A "$out")" ]] || die "OUT $out exists and is not empty; choose a new folder or empty it"
fi
command -v mawk >/dev/null || die "mawk not found (apt-get install mawk)"

# The source file of a table, by case-insensitive name TABLE.csv; empty when absent.
table_file() {
  local f
  for f in "$src"/*; do
    [[ -f "$f" ]] || continue
    local name="${f##*/}"
    [[ "${name,,}" == "$1.csv" ]] && { printf '%s\n' "$f"; return 0; }
  done
  return 0
}

required=(person visit_occurrence condition_occurrence drug_exposure procedure_occurrence measurement observation
  observation_period)
files=()
for table in "${required[@]}"; do
  f="$(table_file "$table")"
  [[ -n "$f" ]] || die "missing required table $src/${table^^}.csv (names match case-insensitively; .csv only)"
  files+=("$f")
done
death="$(table_file death)"
[[ -n "$death" ]] && files+=("$death")
concept="$(table_file concept)"

# Key columns (moved by k * STRIDE when nonempty and nonzero) and each table's own key, which must be a
# positive integer on every row (a 0 or empty key would collide between copies).
id_columns="person_id visit_occurrence_id condition_occurrence_id drug_exposure_id procedure_occurrence_id \
measurement_id observation_id observation_period_id preceding_visit_occurrence_id visit_detail_id \
measurement_event_id observation_event_id"

# Pass 1 over the source: every key id is a plain integer; STRIDE's digits = the longest id.
digits="$(mawk -F, -v ids="$id_columns" '
  BEGIN { n = split(ids, list, " "); for (i = 1; i <= n; i++) is_id[list[i]] = 1; width = 1 }
  FNR == 1 {
    delete col; key = ""; sub(/\r$/, "")
    table = tolower(FILENAME); sub(/.*\//, "", table); sub(/\.csv$/, "", table)
    own = (table == "death" || table == "person") ? "person_id" : table "_id"
    for (i = 1; i <= NF; i++) { name = tolower($i); if (name in is_id) col[i] = name; if (name == own) key = i }
    if (key == "") { printf "%s: header has no %s column\n", FILENAME, own > "/dev/stderr"; bad = 1; exit 1 }
    next
  }
  {
    sub(/\r$/, "")
    for (i in col) {
      v = $i
      if (v == "") {
        if (i + 0 == key) { printf "%s line %d: %s is empty (every row needs its own id)\n", FILENAME, FNR, col[i] > "/dev/stderr"; bad = 1; exit 1 }
        continue
      }
      if (v !~ /^[0-9]+$/) { printf "%s line %d: %s is \"%s\", expected a non-negative integer id\n", FILENAME, FNR, col[i], v > "/dev/stderr"; bad = 1; exit 1 }
      if (i + 0 == key && v + 0 == 0) { printf "%s line %d: %s is 0 (a 0 key would collide between copies)\n", FILENAME, FNR, col[i] > "/dev/stderr"; bad = 1; exit 1 }
      if (length(v) > width) width = length(v)
    }
  }
  END { if (!bad) print width }
' "${files[@]}")" || die "source ids are not usable (above)"

parent="$(dirname "$out")"
mkdir -p "$parent"
work="$(mktemp -d "$parent/.$(basename "$out").partial.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "scale-data: $copies copies of $src into $out (id stride 10^$digits)"
start=$EPOCHREALTIME
for f in "${files[@]}"; do
  name="${f##*/}"
  # The statements that turn a source row into copy k's row, one per changed column with its number written
  # out (a loop over column lists runs at less than half the speed in mawk).
  IFS= read -r header < "$f" || true
  header="${header%$'\r'}"
  IFS=, read -ra columns <<< "$header"
  body=""; date_cols=""; birth_cols=""
  for i in "${!columns[@]}"; do
    n=$((i + 1)); column="${columns[i],,}"
    if [[ " $id_columns " == *" $column "* ]]; then
      body+="if ((v = \$$n) != \"\" && v != \"0\") \$$n = prefix[length(v)] v; "
    elif [[ "$column" =~ _(date|datetime|time)$ ]]; then
      body+="\$$n = moved[\$$n]; "; date_cols+=" $n"
    elif [[ "$column" == person_source_value || "$column" == visit_source_value ]]; then
      body+="if (\$$n != \"\") \$$n = \$$n suffix; "
    elif [[ "$column" =~ ^(year|month|day)_of_birth$ ]]; then
      birth_cols+=" ${BASH_REMATCH[1]}=$n"
    fi
  done
  [[ -n "$birth_cols" ]] && body+="move_birth(); "
  program='
    # Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant'"'"'s civil calendar algorithms).
    function days_from_civil(y, m, d,    era, yoe, doy, doe) {
      y -= (m <= 2)
      era = int((y >= 0 ? y : y - 399) / 400)
      yoe = y - era * 400
      doy = int((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
      doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
      return era * 146097 + doe - 719468
    }
    # YYYY-MM-DD of a day number (remembered: copies share most days); sets civil_y, civil_m, civil_d.
    function civil_from_days(z,    era, doe, yoe, y, doy, mp, d, m) {
      if (z in civil) { civil_y = civil_year[z]; civil_m = civil_month[z]; civil_d = civil_day[z]; return civil[z] }
      era = int((z + 719468 >= 0 ? z + 719468 : z + 719468 - 146096) / 146097)
      doe = z + 719468 - era * 146097
      yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
      y = yoe + era * 400
      doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100))
      mp = int((5 * doy + 2) / 153)
      d = doy - int((153 * mp + 2) / 5) + 1
      m = mp + (mp < 10 ? 3 : -9)
      civil_year[z] = civil_y = y + (m <= 2); civil_month[z] = civil_m = m; civil_day[z] = civil_d = d
      return civil[z] = sprintf("%04d-%02d-%02d", civil_y, m, d)
    }
    function fail(msg) { printf "%s line %d: %s\n", src, line, msg > "/dev/stderr"; failed = 1; exit 1 }
    # Checks a date field of the source once and remembers its day number and what follows the date.
    function check_date(v, column,    day) {
      if (v in day_of) return
      if (v == "") { day_of[v] = ""; return }
      if (v !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]([ T].*)?$/) {
        if (column ~ /_time$/) { day_of[v] = ""; return }      # a time of day, no date in it
        fail(column " is \"" v "\", expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")
      }
      day = days_from_civil(substr(v, 1, 4) + 0, substr(v, 6, 2) + 0, substr(v, 9, 2) + 0)
      if (civil_from_days(day) != substr(v, 1, 10)) fail(column " is \"" v "\", not a calendar date")
      day_of[v] = day; rest_of[v] = substr(v, 11)
    }
    # Birth without a month or day moves as if in mid-year, so the year moves as the dates around it do.
    function move_birth() {
      if ($year == "") return
      civil_from_days(days_from_civil($year + 0, month && $month != "" ? $month + 0 : 7, \
        day && $day != "" ? $day + 0 : 1) + shift)
      $year = civil_y
      if (month && $month != "") $month = civil_m
      if (day && $day != "") $day = civil_d
    }
    BEGIN {
      FS = ","; OFS = ","
      ndate = split(date_cols, date_col, " ")
      nbirth = split(birth_cols, birth, " ")
      for (i = 1; i <= nbirth; i++) { split(birth[i], part, "="); if (part[1] == "year") year = part[2] + 0; \
        else if (part[1] == "month") month = part[2] + 0; else day = part[2] + 0 }
      for (k = 0; k < copies; k++) {
        shift = (7 * k + 182) % 365 - 182
        suffix = "-" k
        # k * 10^digits + id, written as a string so that no id passes through floating point.
        for (len = 1; len <= digits; len++) prefix[len] = k substr(zeros(digits), len + 1)
        if (k > 0) for (v in day_of) moved[v] = day_of[v] == "" ? v : civil_from_days(day_of[v] + shift) rest_of[v]
        line = 0
        while ((status = (getline < src)) > 0) {
          line++
          crlf = sub(/\r$/, "")
          if (line == 1) {
            if (k == 0) {
              ORS = crlf ? "\r\n" : "\n"    # every line ends as the header does
              fields = NF
              for (i = 1; i <= ndate; i++) date_name[i] = tolower($(date_col[i]))
              print > dest
            }
            continue
          }
          if (k == 0) {
            # The source is the same on every pass: check it once, write it unchanged.
            if (index($0, "\"")) fail("has a quote character; quoted fields are not supported (plain comma-separated tables only)")
            if (NF != fields) fail("has " NF " fields, the header " fields)
            if (year && $year != "" && $year !~ /^[0-9]+$/) fail("year_of_birth is \"" $year "\", expected a year")
            if (month && $month != "" && ($month !~ /^[0-9]+$/ || $month + 0 < 1 || $month + 0 > 12)) fail("month_of_birth is \"" $month "\", expected 1-12")
            if (day && $day != "" && ($day !~ /^[0-9]+$/ || $day + 0 < 1 || $day + 0 > 31)) fail("day_of_birth is \"" $day "\", expected 1-31")
            for (i = 1; i <= ndate; i++) check_date($(date_col[i]), date_name[i])
            print > dest
            continue
          }
          '"$body"'
          print > dest
        }
        if (status < 0) { printf "%s: cannot be read\n", src > "/dev/stderr"; failed = 1; exit 1 }
        close(src)
        if (line == 0) { printf "%s: empty file, expected a header line\n", src > "/dev/stderr"; failed = 1; exit 1 }
      }
    }
    function zeros(n) { return sprintf("%0" n "d", 0) }
    END {
      if (failed) exit 1
      if (close(dest) != 0) { printf "%s: write failed\n", dest > "/dev/stderr"; exit 1 }
      printf "%d\n", (line - 1) * copies
    }'
  rows="$(mawk -v src="$f" -v dest="$work/$name" -v copies="$copies" -v digits="$digits" -v date_cols="$date_cols" \
    -v birth_cols="$birth_cols" "$program")" || die "stopped at $name (above); nothing written to $out"
  printf 'scale-data: %-26s %12d rows %8.0f MB  %6.1f s\n' "$name" "$rows" \
    "$(( $(stat -c %s "$work/$name") / 1000000 ))" "$(mawk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
done
[[ -n "$concept" ]] && cp "$concept" "$work/"

[[ -d "$out" ]] && rmdir "$out"
mv -T "$work" "$out"
trap - EXIT
echo "scale-data: done, $(du -sh "$out" | cut -f1) in $out, $(mawk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
