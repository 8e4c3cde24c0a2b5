//! Queue specs: what each kind of SGE worker asks for (bob's `sge_job_spec`).

use std::num::NonZeroUsize;

use std::time::Duration;

use bob_pipelines_grid::{Memory, Resources, Spec, Specs, check_common, parse_time};
use serde::Deserialize;

use crate::Error;

/// The specs of an SGE cluster's kinds of worker, by name, `default` first
/// (bob's `sge_job_spec`): from code ([`Specs::new`]), from TOML with bob's
/// keys ([`Specs::from_toml`]), or a preset ([`queue_default`] …), changed
/// in part with [`Specs::with`].
///
/// ```toml
/// [default]
/// queue = "q_1day"
/// memory = "8GB"
/// io_big = false
/// max_jobs = 16
/// time = "24:00:00"                 # h_rt, and s_rt a minute before it
///
/// [q_short_gpu]
/// queue = "q_short_gpu"
/// memory = "30GB"
/// resources = { q_short_gpu = 1 }   # or ["q_short_gpu"]
/// job_extra = ["-l h_rt=00:30:00"]
/// ```
///
/// ```
/// use bob_pipelines_sge::{queue_default, Error};
///
/// let specs = queue_default()
///     .with("q_short_gpu", |s| s.memory("12GB"))?
///     .with("default", |s| s.max_jobs(16))?;
/// assert_eq!(specs.get("q_short_gpu").unwrap().memory.as_ref().unwrap().as_str(), "12G");
/// assert_eq!(specs.get("default").unwrap().max_jobs, Some(16));
/// # Ok::<(), Error>(())
/// ```
pub type QueueSpecs = Specs<QueueSpec>;

/// What one kind of worker asks SGE for: bob's spec fields, plus `threads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue (`-q`).
    pub queue: String,
    /// Memory (`-l mem_free=…`), if any.
    pub memory: Option<Memory>,
    /// Whether to request `io_big=TRUE`.
    pub io_big: bool,
    /// More `-l` requests (`h_vmem=8G,h_rt=1:00:00`), put first.
    pub resource_spec: String,
    /// Jobs of this kind at most (`None`: the largest `max_jobs` of its specs,
    /// bob's `get_max_jobs`).
    pub max_jobs: Option<usize>,
    /// Resources its workers provide: tasks tagged with one of them (bob's
    /// `fit_tag`, `transform_tag`) run only on such workers.
    pub resources: Vec<String>,
    /// More `#$` lines, verbatim (`-pe pe_mth 2`, `-l h_rt=…`).
    pub job_extra: Vec<String>,
    /// Threads each worker runs tasks on (1, as bob's workers; match the
    /// slots a `-pe` line reserves).
    pub threads: NonZeroUsize,
    /// The time limit (`-l h_rt=…`, with `s_rt` a little before it, when
    /// SGE signals the worker to drain): its workers' lifetime.
    pub time: Option<Duration>,
}

impl QueueSpec {
    /// A spec for `queue`, asking for nothing else, one thread per worker.
    pub fn new(queue: &str) -> Self {
        QueueSpec {
            queue: queue.to_owned(),
            memory: None,
            io_big: false,
            resource_spec: String::new(),
            max_jobs: None,
            resources: Vec::new(),
            job_extra: Vec::new(),
            threads: NonZeroUsize::MIN,
            time: None,
        }
    }

    /// Asks for `memory` (`8GB`, `512M`).
    ///
    /// # Errors
    /// [`Error::Spec`] for a size that does not parse.
    pub fn memory(mut self, memory: &str) -> Result<Self, Error> {
        self.memory = Some(Memory::parse(memory)?);
        Ok(self)
    }

    /// Requests `io_big=TRUE`.
    #[must_use]
    pub fn io_big(mut self, io_big: bool) -> Self {
        self.io_big = io_big;
        self
    }

    /// More `-l` requests.
    #[must_use]
    pub fn resource_spec(mut self, spec: &str) -> Self {
        spec.clone_into(&mut self.resource_spec);
        self
    }

    /// At most `n` jobs of this kind.
    #[must_use]
    pub fn max_jobs(mut self, n: usize) -> Self {
        self.max_jobs = Some(n);
        self
    }

    /// Its workers provide `resource`.
    #[must_use]
    pub fn provides(mut self, resource: &str) -> Self {
        self.resources.push(resource.to_owned());
        self
    }

    /// Adds a `#$` line (`-pe smp 2`).
    #[must_use]
    pub fn job_extra(mut self, line: &str) -> Self {
        self.job_extra.push(line.to_owned());
        self
    }

    /// Threads per worker.
    #[must_use]
    pub fn threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads;
        self
    }

    /// A time limit (`1:00:00`, `30` minutes, `1-00:00:00`): `-l h_rt`, and
    /// `s_rt` before it, when SGE sends the worker SIGUSR1 to drain.
    ///
    /// # Errors
    /// [`Error::Spec`] for a time that does not parse.
    pub fn time(mut self, time: &str) -> Result<Self, Error> {
        self.time = Some(parse_time(time)?);
        Ok(self)
    }

    /// The `-l` line, composed as bob does (`resource_spec`, then
    /// `io_big=TRUE`, `mem_free=…`, and `<queue>=TRUE` for queues other than
    /// `all.q`), but with commas only between items.
    pub fn resource_list(&self) -> Option<String> {
        let mut items: Vec<String> = self
            .resource_spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if self.io_big {
            items.push("io_big=TRUE".to_owned());
        }
        if let Some(m) = &self.memory {
            items.push(format!("mem_free={}", m.as_str()));
        }
        if let Some(t) = self.time {
            let drain = t.saturating_sub(bob_pipelines_grid::drain_lead(t));
            items.push(format!("h_rt={},s_rt={}", t.as_secs(), drain.as_secs()));
        }
        if self.queue != "all.q" {
            items.push(format!("{}=TRUE", self.queue));
        }
        (!items.is_empty()).then(|| items.join(","))
    }
}

/// bob's spec keys, as they come from a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    queue: String,
    #[serde(default)]
    memory: String,
    #[serde(default)]
    io_big: bool,
    #[serde(default)]
    resource_spec: String,
    max_jobs: Option<usize>,
    #[serde(default)]
    resources: Resources,
    #[serde(default, alias = "job_extra_directives")]
    job_extra: Vec<String>,
    threads: Option<NonZeroUsize>,
    #[serde(default)]
    time: String,
}

impl Spec for QueueSpec {
    type Raw = RawSpec;

    fn from_raw(raw: RawSpec) -> Result<Self, Error> {
        Ok(QueueSpec {
            queue: raw.queue,
            memory: match raw.memory.trim() {
                "" => None,
                m => Some(Memory::parse(m)?),
            },
            io_big: raw.io_big,
            resource_spec: raw.resource_spec,
            max_jobs: raw.max_jobs,
            resources: raw.resources.names(),
            job_extra: raw.job_extra,
            threads: raw.threads.unwrap_or(NonZeroUsize::MIN),
            time: match raw.time.trim() {
                "" => None,
                t => Some(parse_time(t)?),
            },
        })
    }

    fn check(&self, name: &str) -> Result<(), Error> {
        let bad = |reason: String| {
            Err(Error::Spec {
                spec: name.to_owned(),
                reason,
            })
        };
        if self.queue.is_empty() || self.queue.contains(|c: char| c.is_whitespace() || c == ',') {
            return bad(format!(
                "queue `{}` is not a queue name (empty, or with spaces or commas)",
                self.queue
            ));
        }
        for item in self.resource_spec.split(',').map(str::trim) {
            if !item.is_empty() && (!item.contains('=') || item.contains(char::is_whitespace)) {
                return bad(format!(
                    "resource_spec item `{item}` is not `name=value` (as `qsub -l` takes)"
                ));
            }
        }
        check_common(
            name,
            self.max_jobs,
            &self.resources,
            &self.job_extra,
            "qsub",
        )
    }

    fn max_jobs(&self) -> Option<usize> {
        self.max_jobs
    }

    fn place(&self) -> Option<&str> {
        Some(&self.queue)
    }

    fn threads(&self) -> NonZeroUsize {
        self.threads
    }

    fn resources(&self) -> &[String] {
        &self.resources
    }

    fn lifetime(&self) -> Option<Duration> {
        self.time
    }
}

fn spec(queue: &str, memory: &str, io_big: bool, max_jobs: Option<usize>, tag: &str) -> QueueSpec {
    let mut s = QueueSpec::new(queue)
        .memory(memory)
        .expect("presets have valid sizes")
        .io_big(io_big);
    s.max_jobs = max_jobs;
    if !tag.is_empty() {
        s = s.provides(tag);
    }
    s
}

fn preset(specs: Vec<(&str, QueueSpec)>) -> QueueSpecs {
    QueueSpecs::new(specs).expect("presets are valid")
}

/// bob's `QUEUE_DEFAULT`: untagged work on `q_1day` (8 GB, up to 128 jobs);
/// `q_1week`, `q_short_gpu` (up to 45), `q_gpu` and `q_long_gpu` for tagged steps.
pub fn queue_default() -> QueueSpecs {
    preset(vec![
        (
            "default",
            spec("q_1day", "8GB", false, Some(128), "default"),
        ),
        ("q_1week", spec("q_1week", "4GB", true, Some(24), "q_1week")),
        (
            "q_long_gpu",
            spec("q_long_gpu", "30GB", false, None, "q_long_gpu"),
        ),
        ("q_gpu", spec("q_gpu", "30GB", false, None, "q_gpu")),
        (
            "q_short_gpu",
            spec("q_short_gpu", "30GB", false, Some(45), "q_short_gpu"),
        ),
    ])
}

/// bob's `QUEUE_IOBIG`: as [`queue_default`], every queue with `io_big=TRUE`.
pub fn queue_iobig() -> QueueSpecs {
    preset(vec![
        ("default", spec("q_1day", "8GB", true, Some(128), "default")),
        ("q_1week", spec("q_1week", "4GB", true, Some(24), "q_1week")),
        (
            "q_long_gpu",
            spec("q_long_gpu", "30GB", true, None, "q_long_gpu"),
        ),
        ("q_gpu", spec("q_gpu", "30GB", true, None, "q_gpu")),
        (
            "q_short_gpu",
            spec("q_short_gpu", "30GB", true, Some(45), "q_short_gpu"),
        ),
    ])
}

/// bob's `QUEUE_GPU`: untagged work on `q_short_gpu` (30 GB, up to 45 jobs);
/// `q_1day` (up to 48), `q_1week`, `q_gpu` and `q_long_gpu` for tagged steps.
pub fn queue_gpu() -> QueueSpecs {
    preset(vec![
        ("default", spec("q_short_gpu", "30GB", false, Some(45), "")),
        ("q_1day", spec("q_1day", "4GB", false, Some(48), "q_1day")),
        ("q_1week", spec("q_1week", "4GB", true, None, "q_1week")),
        (
            "q_short_gpu",
            spec("q_short_gpu", "30GB", false, Some(45), "q_short_gpu"),
        ),
        ("q_gpu", spec("q_gpu", "30GB", false, None, "q_gpu")),
        (
            "q_long_gpu",
            spec("q_long_gpu", "30GB", false, None, "q_long_gpu"),
        ),
    ])
}

/// bob's `QUEUE_MTH` (`sge-demanding`): untagged work on `q_1day_mth` with
/// `-pe pe_mth 2` (up to 70 jobs; here each worker runs on both slots it
/// reserves), the rest as [`queue_default`]. bob wrote the `-pe` line under
/// a key its cluster never read; here it reaches the job.
pub fn queue_mth() -> QueueSpecs {
    let two = NonZeroUsize::new(2).expect("2 is not 0");
    preset(vec![
        (
            "default",
            spec("q_1day_mth", "8GB", false, Some(70), "default")
                .job_extra("-pe pe_mth 2")
                .threads(two),
        ),
        ("q_1week", spec("q_1week", "4GB", true, Some(24), "q_1week")),
        (
            "q_long_gpu",
            spec("q_long_gpu", "30GB", false, None, "q_long_gpu"),
        ),
        ("q_gpu", spec("q_gpu", "30GB", false, None, "q_gpu")),
        (
            "q_short_gpu",
            spec("q_short_gpu", "30GB", false, Some(45), "q_short_gpu"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l_line_is_composed_as_bob_does_with_clean_commas() {
        let s = QueueSpec::new("q_1day").memory("8GB").unwrap().io_big(true);
        assert_eq!(
            s.resource_list().as_deref(),
            Some("io_big=TRUE,mem_free=8G,q_1day=TRUE")
        );
        let s = QueueSpec::new("all.q")
            .memory("4G")
            .unwrap()
            .resource_spec("h_vmem=8G");
        assert_eq!(s.resource_list().as_deref(), Some("h_vmem=8G,mem_free=4G"));
        assert_eq!(QueueSpec::new("all.q").resource_list(), None);
        let s = QueueSpec::new("all.q").time("1:00:00").unwrap();
        assert_eq!(s.resource_list().as_deref(), Some("h_rt=3600,s_rt=3540"));
    }

    #[test]
    fn presets_are_bobs() {
        let d = queue_default();
        let names: Vec<&str> = d.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["default", "q_1week", "q_long_gpu", "q_gpu", "q_short_gpu"]
        );
        assert_eq!(d.max_jobs(), 128);
        assert_eq!(d.get("q_short_gpu").unwrap().max_jobs, Some(45));
        assert!(queue_iobig().iter().all(|(_, s)| s.io_big));
        assert_eq!(queue_gpu().get("default").unwrap().queue, "q_short_gpu");
        let mth = queue_mth();
        let m = mth.get("default").unwrap();
        assert_eq!(
            (m.job_extra.as_slice(), m.threads.get()),
            (&["-pe pe_mth 2".to_owned()][..], 2)
        );
    }

    #[test]
    fn toml_specs_take_bobs_keys_and_name_what_is_wrong() {
        let s = QueueSpecs::from_toml(
            r#"
            [q_short_gpu]
            queue = "q_short_gpu"
            memory = "30GB"
            resources = { q_short_gpu = 1 }
            [default]
            queue = "q_1day"
            memory = "8GB"
            max_jobs = 4
            resources = ""
            job_extra_directives = ["-l h_rt=00:30:00"]
            "#,
        )
        .unwrap();
        let (first, d) = s.iter().next().unwrap();
        assert_eq!(
            (first, d.max_jobs, d.job_extra.len()),
            ("default", Some(4), 1)
        );
        assert_eq!(s.get("q_short_gpu").unwrap().resources, ["q_short_gpu"]);

        let err = |text: &str| QueueSpecs::from_toml(text).unwrap_err().to_string();
        let e = err("[default]\nqueue = \"q\"\nmemroy = \"8GB\"\n");
        assert!(e.contains("`default`") && e.contains("memroy"), "{e}");
        let e = err("[default]\nqueue = \"q\"\nmemory = \"8 bananas\"\n");
        assert!(e.contains("`default`") && e.contains("8 bananas"), "{e}");
        let e = err("[gpu]\nqueue = \"q_gpu\"\n");
        assert!(e.contains("`default`") && e.contains("missing"), "{e}");
        let e = err("[default]\nqueue = \"q 1\"\n");
        assert!(e.contains("q 1"), "{e}");
        let e = err("[default]\nqueue = \"q\"\nmax_jobs = 0\n");
        assert!(e.contains("max_jobs"), "{e}");
        let e = err("[default]\nqueue = \"q\"\njob_extra = [\"pe smp 2\"]\n");
        assert!(e.contains("pe smp 2"), "{e}");
    }

    #[test]
    fn a_preset_is_changed_in_part() {
        let base = queue_default();
        let specs = base
            .clone()
            .with("q_short_gpu", |s| s.memory("12GB"))
            .unwrap()
            .with("default", |s| s.max_jobs(16).job_extra("-l h_rt=01:00:00"))
            .unwrap();
        let gpu = specs.get("q_short_gpu").unwrap();
        assert_eq!(gpu.memory.as_ref().unwrap().as_str(), "12G");
        assert_eq!(gpu.queue, "q_short_gpu", "the rest of the spec is kept");
        assert_eq!(specs.get("default").unwrap().max_jobs, Some(16));
        assert_eq!(
            specs.get("q_1week"),
            base.get("q_1week"),
            "other specs are kept"
        );
        assert_eq!(
            specs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            base.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "and their order"
        );

        let e = base
            .clone()
            .with("q_shrot_gpu", |s| s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`q_shrot_gpu`") && e.contains("q_short_gpu"),
            "{e}"
        );
        let e = base
            .clone()
            .with("q_gpu", |s| s.memory("lots"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`q_gpu`") && e.contains("lots"), "{e}");
        let e = base
            .with("q_gpu", |s| s.max_jobs(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`q_gpu`") && e.contains("max_jobs"), "{e}");
    }
}
