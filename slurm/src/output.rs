//! Slurm's outputs, parsed: `sbatch --parsable`, `squeue -o`, `scontrol -o
//! show job`, `sacct -P`. Tested on the real outputs of Debian's
//! slurm-wlm 22.05.

/// The `squeue` format every poll asks for: job id (`12`, or an array
/// task's `12_3`), state, reason.
pub const SQUEUE_FORMAT: &str = "%i|%T|%r";

/// One line of `squeue -h -r -o '%i|%T|%r'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `12`, or `12_3` for an array's task.
    pub id: String,
    /// `PENDING`, `RUNNING`, `COMPLETED`, …
    pub state: String,
    /// Why it waits (`Resources`, `Priority`, `None`).
    pub reason: String,
}

impl Listed {
    /// Whether it has not started yet.
    pub fn pending(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
        )
    }

    /// Whether it has ended (its final state).
    pub fn ended(&self) -> bool {
        FINAL.contains(&self.state.as_str())
    }

    /// Whether it waits for something that will never come by itself: a
    /// hold, a dependency that can no longer be met, a limit over the
    /// partition's, an account or QOS the cluster refuses.
    pub fn stuck(&self) -> bool {
        self.pending()
            && matches!(
                self.reason.as_str(),
                "DependencyNeverSatisfied"
                    | "JobHeldUser"
                    | "JobHeldAdmin"
                    | "PartitionTimeLimit"
                    | "PartitionNodeLimit"
                    | "InvalidAccount"
                    | "InvalidQOS"
                    | "QOSJobLimit"
                    | "BadConstraints"
            )
    }
}

/// The states a job ends in.
const FINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// The lines of `squeue -h -o '%i|%T|%r'`.
///
/// # Errors
/// A line that is not three fields.
pub fn parse_squeue(out: &str) -> Result<Vec<Listed>, String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('|');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some(id), Some(state), Some(reason), None) => Ok(Listed {
                    id: id.to_owned(),
                    state: state.to_owned(),
                    reason: reason.to_owned(),
                }),
                _ => Err(format!("squeue printed `{l}`, not `id|state|reason`")),
            }
        })
        .collect()
}

/// The job id `sbatch --parsable` printed (`12`, or `12;cluster`).
///
/// # Errors
/// When it printed no number.
pub fn parse_sbatch(out: &str) -> Result<String, String> {
    let id = out.trim().split(';').next().unwrap_or("").trim();
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
        Ok(id.to_owned())
    } else {
        Err(format!("sbatch printed `{}`, not a job id", out.trim()))
    }
}

/// A job's end as Slurm tells it: its state, and its exit code (exit
/// status, signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// `COMPLETED`, `FAILED`, `TIMEOUT`, …
    pub state: String,
    /// The exit status and the signal (`3:0`, `0:9`).
    pub exit: (u32, u32),
    /// Slurm's reason (`NonZeroExitCode`, `TimeLimit`), if it gave one.
    pub reason: Option<String>,
}

impl End {
    /// The end in plain words.
    pub fn describe(&self) -> String {
        let (status, signal) = self.exit;
        let code = match (status, signal) {
            (0, 0) => String::new(),
            (s, 0) => format!(" with exit status {s}"),
            (_, 9) => " (killed: SIGKILL)".to_owned(),
            (_, 15) => " (SIGTERM)".to_owned(),
            (_, 53) => " (its log file could not be opened: is the log folder on a file system \
                       the nodes see?)"
                .to_owned(),
            (_, sig) => format!(" (signal {sig})"),
        };
        let what = match self.state.as_str() {
            "TIMEOUT" => "killed at its time limit (TIMEOUT)".to_owned(),
            "OUT_OF_MEMORY" => {
                "killed for using more memory than it asked for (OUT_OF_MEMORY)".to_owned()
            }
            "NODE_FAIL" => "its node failed (NODE_FAIL)".to_owned(),
            "CANCELLED" => "cancelled (CANCELLED)".to_owned(),
            "PREEMPTED" => "preempted by a job of higher priority (PREEMPTED)".to_owned(),
            "BOOT_FAIL" => "its node failed to boot (BOOT_FAIL)".to_owned(),
            "DEADLINE" => "past its deadline (DEADLINE)".to_owned(),
            "COMPLETED" => "ended (COMPLETED)".to_owned(),
            "FAILED" => "failed (FAILED)".to_owned(),
            other => format!("ended ({other})"),
        };
        let reason = match self.reason.as_deref() {
            Some(r) if !matches!(r, "None" | "NonZeroExitCode" | "TimeLimit") => {
                format!(", reason {r}")
            }
            _ => String::new(),
        };
        format!("{what}{code}{reason}")
    }
}

/// The exit code `X:Y` (status, signal).
fn exit_code(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A job's end from `scontrol -o show job ID` (`None` while it has not
/// ended, or for empty output, which Slurm prints now and then: ask again).
pub fn parse_scontrol(out: &str) -> Option<End> {
    let field = |name: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    let state = field("JobState")?;
    if !FINAL.contains(&state) {
        return None;
    }
    Some(End {
        state: state.to_owned(),
        exit: field("ExitCode").and_then(exit_code).unwrap_or((0, 0)),
        reason: field("Reason").map(str::to_owned),
    })
}

/// A job's end from `sacct -X -n -P -j ID -o JobID,State,ExitCode` with its
/// steps (`sacct -n -P -j ID -o JobID,State,ExitCode`): the job's line for
/// the state, the `.batch` step's for the signal (the job's line hides it).
pub fn parse_sacct(out: &str, id: &str) -> Option<End> {
    let mut end: Option<End> = None;
    for line in out.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        let [job, state, exit] = f.as_slice() else {
            continue;
        };
        // `CANCELLED by 0`.
        let state = state.split_whitespace().next().unwrap_or("");
        if *job == id {
            if !FINAL.contains(&state) {
                return None;
            }
            let exit = exit_code(exit).unwrap_or((0, 0));
            match &mut end {
                Some(e) => e.state = state.to_owned(),
                None => {
                    end = Some(End {
                        state: state.to_owned(),
                        exit,
                        reason: None,
                    });
                }
            }
        } else if job.strip_prefix(id) == Some(".batch") {
            if let Some(code) = exit_code(exit) {
                match &mut end {
                    Some(e) if e.exit == (0, 0) => e.exit = code,
                    Some(_) => {}
                    None => {
                        end = Some(End {
                            state: String::new(),
                            exit: code,
                            reason: None,
                        });
                    }
                }
            }
        }
    }
    end.filter(|e| !e.state.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output of `cmd` in a fixture of real outputs (`$ cmd`, then its
    /// lines, then `[rc=…]`).
    fn fixture(file: &str, cmd: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text
            .find(&format!("$ {cmd}\n"))
            .unwrap_or_else(|| panic!("no `{cmd}` in {}", path.display()));
        text[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("[rc="))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn squeue_lines_and_their_states() {
        let out = fixture(
            "array_pending_running.txt",
            "squeue --me -r -h -o '%i|%A|%F|%K|%j|%T|%r'",
        );
        // That fixture has more fields: keep id, state, reason.
        let lines: String = out
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                format!("{}|{}|{}\n", f[0], f[5], f[6])
            })
            .collect();
        let listed = parse_squeue(&lines).unwrap();
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[0].id, "10_3");
        assert!(listed[0].pending() && !listed[0].stuck());
        assert_eq!(listed[0].reason, "JobArrayTaskLimit");
        assert!(!listed[2].pending() && !listed[2].ended());

        let finished = parse_squeue(&fixture(
            "states_finished.txt",
            "squeue --me -t all -h -o '%i|%j|%T|%r'",
        ))
        .unwrap_err();
        assert!(finished.contains("not `id|state|reason`"), "{finished}");
        let held = parse_squeue("7|PENDING|JobHeldUser\n8|PENDING|Resources\n").unwrap();
        assert!(held[0].stuck() && !held[1].stuck());
    }

    #[test]
    fn sbatch_gives_a_number() {
        assert_eq!(parse_sbatch("7\n").unwrap(), "7");
        assert_eq!(parse_sbatch("12;ci\n").unwrap(), "12");
        assert!(parse_sbatch("Submitted batch job 8").is_err());
    }

    #[test]
    fn ends_in_plain_words_from_scontrol() {
        let end = |job: &str| {
            parse_scontrol(&fixture(
                "states_finished.txt",
                &format!("scontrol -o show job {job}"),
            ))
            .unwrap()
        };
        assert_eq!(end("14").describe(), "ended (COMPLETED)");
        assert_eq!(end("15").describe(), "failed (FAILED) with exit status 3");
        let killed = end("16").describe();
        assert!(
            killed.contains("SIGKILL") && killed.contains("JobLaunchFailure"),
            "{killed}"
        );
        assert!(end("19").describe().contains("log file"));
        let timeout = parse_scontrol(
            "JobId=1 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 RunTime=00:01:06",
        )
        .unwrap();
        assert_eq!(
            timeout.describe(),
            "killed at its time limit (TIMEOUT) (SIGTERM)"
        );
        assert!(parse_scontrol("JobId=1 JobState=RUNNING Reason=None ExitCode=0:0").is_none());
        assert!(parse_scontrol("").is_none());
    }

    #[test]
    fn sacct_takes_the_signal_from_the_batch_step() {
        let out = "53|CANCELLED by 0|0:0\n53.batch|CANCELLED|0:15\n";
        let e = parse_sacct(out, "53").unwrap();
        assert_eq!((e.state.as_str(), e.exit), ("CANCELLED", (0, 15)));
        assert_eq!(e.describe(), "cancelled (CANCELLED) (SIGTERM)");
        let oom = parse_sacct("9|OUT_OF_MEMORY|0:125\n", "9").unwrap();
        assert!(oom.describe().contains("more memory"));
        assert!(parse_sacct("9|RUNNING|0:0\n", "9").is_none());
        assert!(parse_sacct("", "9").is_none());
    }
}
