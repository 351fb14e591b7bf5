//! How many CPU threads a command may ask for: `--threads` of `halo train`, `halo-sample` and its verify and
//! bench. A count far above the cores only slows the run (and ONNX Runtime, asked for 100,000 threads,
//! never returned), so counts above [`MAX_THREADS_PER_CORE`] times the cores are refused.

/// The most threads a run may ask for, per CPU core this process may use.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The CPU cores this process may use (its affinity and cgroup quota, as the standard library reads them).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The largest thread count accepted on this machine.
pub fn max_threads() -> usize {
    available_cores() * MAX_THREADS_PER_CORE
}

/// Checks a thread count: at least 1, at most [`max_threads`].
pub fn check_thread_count(n: usize) -> Result<usize, String> {
    let (cores, max) = (available_cores(), max_threads());
    match n {
        0 => Err("must be at least 1".to_string()),
        n if n > max => Err(format!(
            "{n} threads is more than {MAX_THREADS_PER_CORE} per CPU core this process may use ({cores} core{}, \
             so at most {max}); more threads than cores only slow the run",
            if cores == 1 { "" } else { "s" }
        )),
        n => Ok(n),
    }
}

/// `--threads T` as clap parses it: a whole number that [`check_thread_count`] accepts.
pub fn parse_thread_count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number of threads"))?;
    check_thread_count(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_between_one_and_the_bound_are_accepted() {
        assert_eq!(parse_thread_count("1"), Ok(1));
        assert_eq!(parse_thread_count(&max_threads().to_string()), Ok(max_threads()));
        assert_eq!(parse_thread_count("0"), Err("must be at least 1".to_string()));
        let too_many = parse_thread_count("100000").unwrap_err();
        assert!(
            too_many.contains("100000 threads is more than 4 per CPU core"),
            "{too_many}"
        );
        assert!(parse_thread_count(&(max_threads() + 1).to_string()).is_err());
        assert!(parse_thread_count("two").unwrap_err().contains("not a whole number"));
    }
}
