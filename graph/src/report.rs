//! What a run did: per step, and as a whole.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one step did in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Whether the step was fitted in this run.
    pub fitted: bool,
    /// Time spent fitting.
    pub fit_time: Duration,
    /// Time spent transforming.
    pub transform_time: Duration,
    /// Samples the step transformed (valid samples that reached it).
    pub samples: usize,
    /// Samples that failed at this step.
    pub failed: usize,
    /// Where its tasks ran, on executors with workers elsewhere (empty
    /// otherwise): one entry per worker and operation.
    #[serde(default)]
    pub ran_on: Vec<RanOn>,
}

/// Tasks of a step that one worker ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RanOn {
    /// The worker's name: its job id (`1234`, or `1234.2` for a job array's task).
    pub worker: String,
    /// The kind of worker (for SGE, the queue spec and its queue).
    pub kind: String,
    /// Whether these were the step's fit (else transforms).
    pub fit: bool,
    /// How many tasks.
    pub tasks: usize,
}

impl StepReport {
    /// Counts a task that `worker`, of kind `kind`, ran.
    pub fn ran(&mut self, worker: &str, kind: &str, fit: bool) {
        match self
            .ran_on
            .iter_mut()
            .find(|r| r.worker == worker && r.fit == fit)
        {
            Some(r) => r.tasks += 1,
            None => self.ran_on.push(RanOn {
                worker: worker.to_owned(),
                kind: kind.to_owned(),
                fit,
                tasks: 1,
            }),
        }
    }

    /// Adds one transform task's counts and time.
    pub fn add(&mut self, counts: crate::Counts, time: Duration) {
        self.samples += counts.samples;
        self.failed += counts.failed;
        self.transform_time += time;
    }
}

/// What a run did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// One entry per step, in pipeline order.
    pub steps: Vec<StepReport>,
    /// Samples whose data could not be loaded.
    pub load_failed: usize,
    /// Samples whose outputs were read from checkpoints instead of computed.
    pub from_checkpoints: usize,
    /// Samples recomputed because their checkpoint file was missing or corrupt.
    pub recomputed: usize,
    /// Samples that failed in an earlier run and were not tried again (their
    /// failure markers were read; see `Checkpoints::retry_failed`).
    #[serde(default)]
    pub known_failed: usize,
    /// Bytes that came into the driver from its workers' sockets (after
    /// their handshakes); 0 on executors without workers.
    #[serde(default)]
    pub driver_bytes_in: u64,
    /// Bytes that went out of the driver to its workers' sockets.
    #[serde(default)]
    pub driver_bytes_out: u64,
    /// Things the user should know that did not stop the run.
    pub warnings: Vec<String>,
    /// Wall time of the whole run.
    pub total: Duration,
    /// Every task that ran, where and when: the task stream.
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
    /// The samples that failed among the run's outputs, the first
    /// [`MAX_FAILURES`]: key, step, reason.
    #[serde(default)]
    pub failures: Vec<FailedSample>,
    /// The run's workers and their jobs, on executors with workers
    /// elsewhere (empty otherwise), in order of submission.
    #[serde(default)]
    pub workers: Vec<WorkerRecord>,
    /// The lists of samples the run went through, when there were several
    /// (see `Lazy::and_transform`); empty for a run of one list.
    #[serde(default)]
    pub lists: Vec<ListReport>,
}

/// One list of samples of a run of several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReport {
    /// Its name (empty: the first list, unnamed).
    pub name: String,
    /// Its samples.
    pub samples: usize,
    /// Its partitions.
    pub partitions: usize,
    /// What the run did with it: `fit`, `fit, transform` or `transform`.
    pub role: String,
}

impl fmt::Display for ListReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "(first)"
        } else {
            &self.name
        };
        write!(
            f,
            "{name} ({}): {} samples in {} partitions",
            self.role, self.samples, self.partitions
        )
    }
}

/// A worker of the run (on a grid, its job): what it was, what became of
/// it, what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its name: its job id (`1234`, `1234.2` for a job array's task), or
    /// its place among local worker processes.
    pub worker: String,
    /// The kind of worker (for SGE, the queue spec and its queue).
    pub kind: String,
    /// Its states in order (submitted, pending and why, connected, lost and
    /// why, …), each with when it began, in milliseconds since the run
    /// started.
    pub states: Vec<WorkerEvent>,
    /// Tasks it ran.
    pub tasks: usize,
    /// Its peak resident memory, in bytes, as its heartbeats said (0: it
    /// said none).
    pub peak_memory: u64,
}

/// One state of a worker, and when it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// The state (`connected`, `lost: silent for 30s`, …).
    pub state: String,
}

impl WorkerRecord {
    /// Its last state.
    pub fn state(&self) -> &str {
        self.states.last().map_or("", |e| e.state.as_str())
    }
}

/// How many failed samples a report lists, at most.
pub const MAX_FAILURES: usize = 1_000;

/// A sample that failed: which, where, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedSample {
    /// Its key.
    pub key: String,
    /// The step it failed at.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// One task as it ran: the task stream's bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id (`center.transform-3`). The strings of a record are
    /// shared with the graph and with each other record of the same step
    /// or worker: a run of many tasks costs no allocation per task for
    /// them.
    pub task: Arc<str>,
    /// Its step's name (none for a load).
    pub step: Option<Arc<str>>,
    /// Who ran it: a worker's name, or the driver's thread.
    pub worker: Arc<str>,
    /// When it started and ended, in milliseconds since the run started.
    pub start_ms: f64,
    /// See `start_ms`.
    pub end_ms: f64,
    /// Whether it failed.
    pub failed: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.lists.is_empty() {
            let lists: Vec<String> = self.lists.iter().map(ToString::to_string).collect();
            writeln!(f, "lists: {}", lists.join("; "))?;
        }
        writeln!(
            f,
            "{:<24} {:>10} {:>8} {:>10} {:>12}",
            "step", "samples", "failed", "fit", "transform"
        )?;
        for s in &self.steps {
            let fit = if s.fitted {
                format!("{:.3?}", s.fit_time)
            } else {
                "-".to_owned()
            };
            writeln!(
                f,
                "{:<24} {:>10} {:>8} {:>10} {:>12}",
                s.name,
                s.samples,
                s.failed,
                fit,
                format!("{:.3?}", s.transform_time)
            )?;
        }
        for s in self.steps.iter().filter(|s| !s.ran_on.is_empty()) {
            write!(f, "{} ran on:", s.name)?;
            for (i, r) in s.ran_on.iter().enumerate() {
                let sep = if i == 0 { " " } else { "; " };
                let what = if r.fit {
                    "fit".to_owned()
                } else {
                    format!("{} transform(s)", r.tasks)
                };
                write!(f, "{sep}{what} on `{}` [{}]", r.worker, r.kind)?;
            }
            writeln!(f)?;
        }
        if self.driver_bytes_in + self.driver_bytes_out > 0 {
            writeln!(
                f,
                "the driver's sockets to workers: {} bytes in, {} out",
                self.driver_bytes_in, self.driver_bytes_out
            )?;
        }
        if self.from_checkpoints > 0 {
            writeln!(
                f,
                "{} samples read from checkpoints ({} recomputed: missing or corrupt files)",
                self.from_checkpoints, self.recomputed
            )?;
        }
        if self.known_failed > 0 {
            writeln!(
                f,
                "{} samples failed in an earlier run and were not tried again: \
                 Checkpoints::retry_failed(true), or `bob-pipelines checkpoint clean --failed \
                 <features>`, tries them again",
                self.known_failed
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if self.load_failed > 0 {
            writeln!(f, "{} samples could not be loaded", self.load_failed)?;
        }
        write!(f, "total {:.3?}", self.total)
    }
}

impl Report {
    /// The report as JSON: the report's fields, and `status` (`done`, or
    /// `failed` with `error`).
    ///
    /// # Errors
    /// When it cannot be written as JSON (it always can).
    pub fn to_json(&self, error: Option<&str>) -> serde_json::Result<String> {
        let mut value = serde_json::to_value(self)?;
        if let serde_json::Value::Object(map) = &mut value {
            let status = if error.is_some() { "failed" } else { "done" };
            map.insert("status".to_owned(), status.into());
            if let Some(e) = error {
                map.insert("error".to_owned(), e.into());
            }
        }
        serde_json::to_string_pretty(&value)
    }

    /// The report as one HTML page, with nothing to fetch: the outcome, the
    /// steps, the task stream (a row per worker, a bar per task coloured
    /// by step, failures red; the first [`MAX_BARS`] tasks), the warnings.
    pub fn to_html(&self, error: Option<&str>) -> String {
        let mut h = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>bob-pipelines report</title>\
             <style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}\
             td:first-child,th:first-child{text-align:left}.failed{color:#c00}\
             svg text{font:11px sans-serif}</style></head><body>",
        );
        let status = match error {
            Some(e) => format!("<p class=\"failed\" id=\"status\">failed: {}</p>", esc(e)),
            None => "<p id=\"status\">done</p>".to_owned(),
        };
        h.push_str(&format!(
            "<h1>bob-pipelines run</h1>{status}<p>total {:.3?}; {} task(s)</p>",
            self.total,
            self.tasks.len()
        ));
        if !self.lists.is_empty() {
            h.push_str(
                "<h2>Lists</h2><table id=\"lists\"><tr><th>list</th><th>role</th>\
                 <th>samples</th><th>partitions</th></tr>",
            );
            for l in &self.lists {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&l.name),
                    esc(&l.role),
                    l.samples,
                    l.partitions
                ));
            }
            h.push_str("</table>");
        }
        h.push_str(
            "<h2>Steps</h2><table id=\"steps\"><tr><th>step</th><th>samples</th><th>failed</th>\
             <th>fit</th><th>transform</th><th>ran on</th></tr>",
        );
        for s in &self.steps {
            let fit = if s.fitted {
                format!("{:.3?}", s.fit_time)
            } else {
                "-".to_owned()
            };
            let on: Vec<String> = s
                .ran_on
                .iter()
                .map(|r| {
                    let what = if r.fit {
                        "fit".to_owned()
                    } else {
                        format!("{} transform(s)", r.tasks)
                    };
                    format!("{what} on {} [{}]", esc(&r.worker), esc(&r.kind))
                })
                .collect();
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{fit}</td><td>{:.3?}</td><td>{}</td></tr>",
                esc(&s.name),
                s.samples,
                s.failed,
                s.transform_time,
                on.join("; ")
            ));
        }
        h.push_str("</table>");
        if !self.workers.is_empty() {
            h.push_str(
                "<h2>Workers</h2><table id=\"workers\"><tr><th>worker</th><th>kind</th>\
                 <th>tasks</th><th>peak memory</th><th>states</th></tr>",
            );
            for w in &self.workers {
                let states: Vec<String> = w
                    .states
                    .iter()
                    .map(|e| format!("{} at {:.1} s", esc(&e.state), e.at_ms as f64 / 1e3))
                    .collect();
                h.push_str(&format!(
                    "<tr class=\"worker\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&w.worker),
                    esc(&w.kind),
                    w.tasks,
                    mib(w.peak_memory),
                    states.join("; ")
                ));
            }
            h.push_str("</table>");
        }
        h.push_str("<h2>Task stream</h2>");
        h.push_str(&self.task_stream());
        if !self.failures.is_empty() {
            h.push_str("<h2>Failed samples</h2><ul id=\"failures\" class=\"failed\">");
            for f in self.failures.iter().take(100) {
                h.push_str(&format!(
                    "<li>{} at {}: {}</li>",
                    esc(&f.key),
                    esc(&f.step),
                    esc(&f.reason)
                ));
            }
            h.push_str("</ul>");
        }
        if !self.warnings.is_empty() {
            h.push_str("<h2>Warnings</h2><ul id=\"warnings\">");
            for w in &self.warnings {
                h.push_str(&format!("<li>{}</li>", esc(w)));
            }
            h.push_str("</ul>");
        }
        h.push_str(&format!(
            "<h2>Totals</h2><pre>{}</pre></body></html>",
            esc(&self.to_string())
        ));
        h
    }

    /// The task stream as SVG: a row per worker, in order of first task.
    fn task_stream(&self) -> String {
        let tasks = &self.tasks[..self.tasks.len().min(MAX_BARS)];
        let mut rows: Vec<&str> = Vec::new();
        for t in tasks {
            if !rows.contains(&&*t.worker) {
                rows.push(&t.worker);
            }
        }
        let end = tasks.iter().map(|t| t.end_ms).fold(1.0_f64, f64::max);
        let (label, width, row) = (160.0, 900.0, 18.0);
        let mut svg = format!(
            "<svg id=\"stream\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">",
            label + width + 10.0,
            row * rows.len() as f64 + 20.0
        );
        for (i, w) in rows.iter().enumerate() {
            svg.push_str(&format!(
                "<text x=\"0\" y=\"{}\">{}</text>",
                row * i as f64 + 13.0,
                esc(w)
            ));
        }
        let steps: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        for t in tasks {
            let y = row * rows.iter().position(|w| **w == *t.worker).unwrap_or(0) as f64;
            let x = label + t.start_ms / end * width;
            let w = ((t.end_ms - t.start_ms) / end * width).max(0.5);
            let fill = if t.failed {
                "#d00".to_owned()
            } else {
                let k = t
                    .step
                    .as_deref()
                    .and_then(|s| steps.iter().position(|x| *x == s))
                    .map_or(0, |k| k + 1);
                format!("hsl({},60%,55%)", (k * 67) % 360)
            };
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{}\" fill=\"{fill}\">\
                 <title>{} on {}: {:.1}–{:.1} ms</title></rect>",
                y + 2.0,
                row - 4.0,
                esc(&t.task),
                esc(&t.worker),
                t.start_ms,
                t.end_ms
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{label}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{:.0} ms</text></svg>",
            row * rows.len() as f64 + 16.0,
            label + width - 40.0,
            row * rows.len() as f64 + 16.0,
            end
        ));
        if self.tasks.len() > MAX_BARS {
            svg.push_str(&format!(
                "<p>the first {MAX_BARS} of {} tasks; report.json has them all</p>",
                self.tasks.len()
            ));
        }
        svg
    }
}

/// Tasks drawn in the HTML report's task stream, at most (the page stays
/// small enough to open; the JSON has them all).
pub const MAX_BARS: usize = 20_000;

/// `bytes` in MiB, or `-` for none.
fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_owned()
    } else {
        format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// `s` with HTML's special characters escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
