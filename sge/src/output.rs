//! What Grid Engine's commands print, parsed: `qsub -terse`, `qstat -xml`,
//! `qstat -j`, `qacct -j`. The formats are those of Son of Grid Engine 8.1
//! (Debian's `gridengine-*`); the tests use its real outputs.

/// A job or array task as `qstat -u '*' -xml` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QstatJob {
    /// `JB_job_number`.
    pub number: u64,
    /// `JB_name`.
    pub name: String,
    /// `JB_owner`.
    pub owner: String,
    /// `state`: `r`, `qw`, `hqw`, `Eqw`, `dr`, `t`, …
    pub state: String,
    /// `queue_name` (`q_1day@host`) for a running job.
    pub queue: Option<String>,
    /// `tasks` for an array: one task (`3`) when running, a range list
    /// (`1-3:1`, `2,5-7:1`) when pending.
    pub tasks: Option<String>,
}

impl QstatJob {
    /// Whether this entry covers task `task` of its job (`None`: not an array).
    pub fn covers(&self, task: Option<u64>) -> bool {
        match (task, &self.tasks) {
            (None, None) => true,
            (Some(t), Some(list)) => tasks_contain(list, t),
            _ => false,
        }
    }

    /// An error state (`Eqw`, `Er`): the job will not run until someone acts.
    pub fn in_error(&self) -> bool {
        self.state.contains('E')
    }

    /// Waiting to run (`qw`, `hqw`, `Rq`).
    pub fn pending(&self) -> bool {
        self.state.contains('q') || self.state.contains('h')
    }
}

/// Whether an SGE task list (`1-3:1`, `4`, `2,5-9:2`) contains `task`.
pub fn tasks_contain(list: &str, task: u64) -> bool {
    list.split(',').any(|part| {
        let (range, step) = part.split_once(':').unwrap_or((part, "1"));
        let step: u64 = step.trim().parse().unwrap_or(1).max(1);
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        match (lo.trim().parse::<u64>(), hi.trim().parse::<u64>()) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&task) && (task - lo) % step == 0,
            _ => false,
        }
    })
}

/// Parses `qstat -xml` (with or without `-u '*'` and `-r`).
///
/// # Errors
/// When the text is not qstat's XML (says what was expected).
pub fn parse_qstat_xml(xml: &str) -> Result<Vec<QstatJob>, String> {
    if !xml.contains("<job_info") {
        let start: String = xml.chars().take(200).collect();
        return Err(format!(
            "not the XML of `qstat -xml` (no <job_info>); it began: {start:?}"
        ));
    }
    let mut jobs = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<job_list") {
        let body_start = rest[i..]
            .find('>')
            .map(|j| i + j + 1)
            .ok_or("a <job_list> tag is cut off")?;
        let end = rest[body_start..]
            .find("</job_list>")
            .map(|j| body_start + j)
            .ok_or("a <job_list> has no end")?;
        let body = &rest[body_start..end];
        let field = |tag: &str| element(body, tag);
        let number = field("JB_job_number")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("a <job_list> without a job number: {body:?}"))?;
        jobs.push(QstatJob {
            number,
            name: field("JB_name").unwrap_or_default(),
            owner: field("JB_owner").unwrap_or_default(),
            state: field("state").unwrap_or_default(),
            queue: field("queue_name").filter(|q| !q.is_empty()),
            tasks: field("tasks").filter(|t| !t.is_empty()),
        });
        rest = &rest[end + "</job_list>".len()..];
    }
    Ok(jobs)
}

/// The text of the first `<tag>…</tag>` in `body`, unescaped.
fn element(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}");
    let mut from = 0;
    while let Some(i) = body[from..].find(&open) {
        let at = from + i + open.len();
        // `<state>` must not match `<statex>`: the tag ends at `>`, ` ` or `/`.
        match body[at..].chars().next() {
            Some('>') | Some(' ') => {
                let start = at + body[at..].find('>')? + 1;
                if body[at..start].ends_with("/>") {
                    return Some(String::new());
                }
                let end = start + body[start..].find(&format!("</{tag}>"))?;
                return Some(unescape(body[start..end].trim()));
            }
            Some('/') => return Some(String::new()),
            _ => from = at,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The job ids `qsub -terse` printed: `12` for a job, `12.1-4:1` for an
/// array (then `12.1` … `12.4`).
///
/// # Errors
/// When the output is not that.
pub fn parse_terse(out: &str) -> Result<Vec<String>, String> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let bad = || format!("qsub -terse printed {out:?}, not a job id");
    let Some((job, tasks)) = line.split_once('.') else {
        line.parse::<u64>().map_err(|_| bad())?;
        return Ok(vec![line.to_owned()]);
    };
    job.parse::<u64>().map_err(|_| bad())?;
    let (range, step) = tasks.split_once(':').unwrap_or((tasks, "1"));
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let (lo, hi, step) = match (lo.parse::<u64>(), hi.parse::<u64>(), step.parse::<u64>()) {
        (Ok(lo), Ok(hi), Ok(step)) if lo <= hi && step > 0 => (lo, hi, step),
        _ => return Err(bad()),
    };
    Ok((lo..=hi)
        .step_by(usize::try_from(step).unwrap_or(1))
        .map(|t| format!("{job}.{t}"))
        .collect())
}

/// A job id as `number` and array task: `12` → (12, None), `12.3` → (12, Some(3)).
pub fn split_job_id(id: &str) -> Option<(u64, Option<u64>)> {
    match id.split_once('.') {
        None => Some((id.parse().ok()?, None)),
        Some((j, t)) => Some((j.parse().ok()?, Some(t.parse().ok()?))),
    }
}

/// The `error reason` lines of `qstat -j N` (why a job sits in `Eqw`),
/// without their timestamp prefix.
pub fn error_reasons(qstat_j: &str) -> Vec<String> {
    qstat_j
        .lines()
        .filter(|l| l.starts_with("error reason"))
        .filter_map(|l| l.split_once(':').map(|(_, r)| r.trim()))
        .map(|r| {
            // "11/24/2026 17:51:58 [0:8179]: error: can't open …"
            r.split_once("]: ").map_or(r, |(_, m)| m).trim().to_owned()
        })
        .collect()
}

/// The `scheduling info` of `qstat -j` (why a job waits; the scheduler's
/// `schedd_job_info` must be on): its lines, joined with `; `, or `None`.
pub fn scheduling_info(qstat_j: &str) -> Option<String> {
    let mut lines = qstat_j
        .lines()
        .skip_while(|l| !l.starts_with("scheduling info:"));
    let first = lines.next()?.trim_start_matches("scheduling info:").trim();
    let rest = lines
        .take_while(|l| l.starts_with(char::is_whitespace))
        .map(str::trim);
    let all: Vec<&str> = std::iter::once(first)
        .chain(rest)
        .filter(|l| !l.is_empty())
        .collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// One `qacct -j` record: the fields a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// `qname`.
    pub queue: String,
    /// `hostname`.
    pub host: String,
    /// `failed`: 0, or a code and SGE's words (`100 : assumedly after job`).
    pub failed: String,
    /// `exit_status` (128 + signal for a killed job: 137 SIGKILL, 138 SIGUSR1).
    pub exit_status: i32,
    /// `maxvmem` as printed.
    pub maxvmem: String,
}

impl Accounting {
    /// How the job ended, in plain words.
    pub fn describe(&self) -> String {
        let failed = self.failed.trim();
        let failed_note = if failed.is_empty() || failed == "0" {
            String::new()
        } else {
            format!("; SGE says `failed {failed}`")
        };
        let how = match self.exit_status {
            0 => "ended with exit status 0".to_owned(),
            137 => "was killed (SIGKILL, exit status 137): by qdel, or on reaching a hard \
                    limit such as h_rt or h_vmem"
                .to_owned(),
            138 => "was killed (SIGUSR1, exit status 138): it reached a soft limit such as \
                    s_rt or s_vmem"
                .to_owned(),
            s if s > 128 => format!("was killed by signal {} (exit status {s})", s - 128),
            s => format!("ended with exit status {s}"),
        };
        format!(
            "job {how} on {}@{} (max. virtual memory {}){failed_note}",
            self.queue, self.host, self.maxvmem
        )
    }
}

/// Parses the last record of `qacct -j` output (a job ran again after a
/// reschedule has several).
pub fn parse_qacct(out: &str) -> Option<Accounting> {
    let record = out
        .rsplit("==============================================================")
        .find(|r| r.contains("qname"))?;
    let field = |name: &str| {
        record.lines().find_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            (k == name).then(|| v.trim().to_owned())
        })
    };
    let exit = field("exit_status")?;
    Some(Accounting {
        queue: field("qname").unwrap_or_default(),
        host: field("hostname").unwrap_or_default(),
        failed: field("failed").unwrap_or_default(),
        exit_status: exit.split_whitespace().next()?.parse().ok()?,
        maxvmem: field("maxvmem").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QSTAT: &str = include_str!("../tests/fixtures/qstat.xml");
    const EQW: &str = include_str!("../tests/fixtures/qstat_r_eqw_pending.xml");
    const EMPTY: &str = "<?xml version='1.0'?>\n<job_info  xmlns:xsd=\"x\">\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>\n";

    #[test]
    fn qstat_xml_of_a_real_grid_engine() {
        let jobs = parse_qstat_xml(QSTAT).unwrap();
        let running = jobs.iter().find(|j| j.number == 6).unwrap();
        assert_eq!(
            (
                running.name.as_str(),
                running.state.as_str(),
                running.queue.as_deref()
            ),
            ("running_job", "r", Some("all.q@vm"))
        );
        assert!(running.covers(None) && !running.covers(Some(1)));
        let array: Vec<_> = jobs.iter().filter(|j| j.number == 9).collect();
        assert_eq!(array.len(), 4);
        assert!(array.iter().any(|j| j.covers(Some(4))));
        let held = jobs.iter().find(|j| j.number == 10).unwrap();
        assert!(held.pending() && held.covers(Some(3)) && !held.covers(Some(4)));
        assert!(parse_qstat_xml(EMPTY).unwrap().is_empty());
        let e = parse_qstat_xml("error: commlib error: got select error").unwrap_err();
        assert!(e.contains("commlib"), "{e}");
    }

    #[test]
    fn eqw_jobs_are_in_error() {
        let jobs = parse_qstat_xml(EQW).unwrap();
        let eqw: Vec<_> = jobs.iter().filter(|j| j.in_error()).collect();
        assert_eq!(eqw.len(), 1, "{jobs:?}");
        assert_eq!(eqw[0].state, "Eqw");
        assert!(jobs.iter().any(|j| j.pending() && !j.in_error()));
    }

    #[test]
    fn task_lists() {
        assert!(tasks_contain("1-3:1", 2));
        assert!(!tasks_contain("1-3:1", 4));
        assert!(tasks_contain("2,5-9:2", 7) && !tasks_contain("2,5-9:2", 6));
        assert!(tasks_contain("4", 4) && !tasks_contain("x", 4));
    }

    #[test]
    fn qsub_terse_ids() {
        assert_eq!(parse_terse("5\n").unwrap(), ["5"]);
        assert_eq!(parse_terse("8.1-3:1\n").unwrap(), ["8.1", "8.2", "8.3"]);
        assert!(parse_terse("Your job 5 (\"x\") has been submitted").is_err());
        assert_eq!(split_job_id("8.2"), Some((8, Some(2))));
        assert_eq!(split_job_id("8"), Some((8, None)));
    }

    #[test]
    fn eqw_reason_from_qstat_j() {
        let out = "job_number:                 46\nerror reason          1:      11/24/2026 17:51:58 [0:8179]: error: can't open output file \"/nonexistent/dir/x.out\": No such file or directory\nscheduling info:            There are no messages available\n";
        assert_eq!(
            error_reasons(out),
            ["error: can't open output file \"/nonexistent/dir/x.out\": No such file or directory"]
        );
    }

    #[test]
    fn qacct_records() {
        let a = parse_qacct(include_str!("../tests/fixtures/qacct.txt")).unwrap();
        assert_eq!((a.queue.as_str(), a.exit_status), ("all.q", 0));
        let killed = "==============================================================\nqname        q_1day\nhostname     vm\nfailed       100 : assumedly after job\nexit_status  137                  (Killed)\nmaxvmem      10.1MB\n";
        let k = parse_qacct(killed).unwrap();
        assert_eq!(k.exit_status, 137);
        let d = k.describe();
        assert!(
            d.contains("SIGKILL") && d.contains("q_1day@vm") && d.contains("assumedly"),
            "{d}"
        );
        assert!(parse_qacct("error: job id 5 not found\n").is_none());
    }

    #[test]
    fn the_scheduling_info_of_a_waiting_job_is_its_reason() {
        // The tail of `qstat -j` for a pending job, as a real Grid Engine
        // printed it (schedd_job_info true).
        let qstat_j = "job_number:                 7
hard resource_list:         gpu=3
job_name:                   pending_job
hard_queue_list:            q_short_gpu
scheduling info:            queue instance \"q_1day@vm\" dropped because it is full
                            cannot run in queue \"all.q\" because it is not contained in its hard queue list (-q)
                            (-l gpu=3) cannot run at host \"vm\" because it offers only hc:gpu=2.000000
";
        let why = scheduling_info(qstat_j).unwrap();
        assert!(why.starts_with("queue instance \"q_1day@vm\" dropped because it is full; "));
        assert!(why.ends_with(
            "(-l gpu=3) cannot run at host \"vm\" because it offers only hc:gpu=2.000000"
        ));
        assert_eq!(why.matches("; ").count(), 2);
        assert_eq!(
            scheduling_info("job_number: 7\nusage 1: cpu=00:00:00\n"),
            None
        );
    }
}
