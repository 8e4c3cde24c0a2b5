//! Running a grid's commands, and words safe for its job scripts.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// `s` as one shell word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The job name for spec `spec` with prefix `prefix`: SGE refuses
/// `/ : @ \ * ?` and names that start with a digit, and a name with spaces
/// is awkward in any grid's listings.
pub fn job_name(prefix: &str, spec: &str) -> String {
    let mut name: String = format!("{prefix}-{spec}")
        .chars()
        .map(|c| if "/:@\\*? \t".contains(c) { '_' } else { c })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'j');
    }
    name
}

/// Runs a command, with `input` on its standard input, and collects what
/// it prints.
///
/// # Errors
/// When it cannot be started or waited for.
pub fn run(cmd: &mut Command, input: Option<&[u8]>) -> std::io::Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(bytes)?;
    }
    child.wait_with_output()
}

/// What a failed command said, on one line, with its exit status.
pub fn said(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let text: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Exiting.")
        .collect();
    format!("{} ({})", text.join(" "), out.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_and_words_are_safe_for_grids_and_the_shell() {
        assert_eq!(job_name("run 1", "a/b"), "run_1-a_b");
        assert_eq!(job_name("1x", "d"), "j1x-d");
        assert_eq!(quote("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b$c"), "'a b$c'");
    }
}
