//! Command-line and file keywords (`omop`, `small`, `fp16`, ...) parsed into their types, so that every
//! caller gets a typed value or one error message that lists the choices.

/// The value of keyword `s` among `choices`; the error names `what` was expected and every keyword.
pub fn parse_keyword<T: Copy>(s: &str, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(keyword, _)| *keyword == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(keyword, _)| *keyword).collect();
            format!("unknown {what} `{s}` (expected {})", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::parse_keyword;

    #[test]
    fn known_keywords_parse_and_unknown_ones_list_the_choices() {
        let choices = [("cpu", 0), ("cuda", 1)];
        assert_eq!(parse_keyword("cuda", "device", &choices), Ok(1));
        assert_eq!(
            parse_keyword("tpu", "device", &choices),
            Err("unknown device `tpu` (expected cpu, cuda)".to_string())
        );
    }
}
