//! Partition specs: what each kind of Slurm worker asks for.

use std::num::NonZeroUsize;
use std::time::Duration;

use bob_pipelines_grid::{Memory, Resources, Spec, Specs, check_common, format_time, parse_time};
use serde::Deserialize;

use crate::Error;

/// The specs of a Slurm cluster's kinds of worker, by name, `default`
/// first: from code ([`Specs::new`]), from TOML ([`Specs::from_toml`]), or
/// a preset ([`partitions_default`], [`partitions_gpu`]), changed in part
/// with [`Specs::with`].
///
/// ```toml
/// [default]
/// partition = "cpu"
/// memory = "8GB"
/// time = "1-00:00:00"
/// max_jobs = 64
///
/// [gpu]
/// partition = "gpu"
/// gres = "gpu:1"
/// memory = "30GB"
/// resources = ["gpu", "q_short_gpu"]
/// extra = ["--constraint=a100"]
/// ```
///
/// ```
/// use bob_pipelines_slurm::{PartitionSpec, PartitionSpecs};
///
/// let specs = PartitionSpecs::new([
///     ("default", PartitionSpec::new(Some("cpu")).memory("8GB")?.time("2:00:00")?),
///     ("gpu", PartitionSpec::new(Some("gpu")).gres("gpu:1").provides("gpu")),
/// ])?;
/// assert_eq!(specs.get("default").unwrap().time.unwrap().as_secs(), 7200);
/// # Ok::<(), bob_pipelines_slurm::Error>(())
/// ```
pub type PartitionSpecs = Specs<PartitionSpec>;

/// What one kind of worker asks Slurm for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// The partition (`--partition`; `None`: the cluster's default).
    pub partition: Option<String>,
    /// CPUs per worker (`--cpus-per-task`), which it runs tasks on.
    pub cpus: NonZeroUsize,
    /// Memory (`--mem`; `None`: the partition's default).
    pub memory: Option<Memory>,
    /// Generic resources (`--gres=gpu:1`).
    pub gres: Option<String>,
    /// The time limit (`--time`; `None`: the partition's default).
    pub time: Option<Duration>,
    /// Jobs of this kind at most (`None`: the largest `max_jobs` of its
    /// specs).
    pub max_jobs: Option<usize>,
    /// Resources its workers provide: tasks tagged with one of them (bob's
    /// `fit_tag`, `transform_tag`) run only on such workers.
    pub resources: Vec<String>,
    /// The account (`--account`), instead of bobrc's `slurm.account`.
    pub account: Option<String>,
    /// The quality of service (`--qos`).
    pub qos: Option<String>,
    /// More `#SBATCH` lines, verbatim (`--constraint=a100`).
    pub extra: Vec<String>,
}

impl PartitionSpec {
    /// A spec for `partition` (`None`: the cluster's default), one CPU per
    /// worker, asking for nothing else.
    pub fn new(partition: Option<&str>) -> Self {
        PartitionSpec {
            partition: partition.map(str::to_owned),
            cpus: NonZeroUsize::MIN,
            memory: None,
            gres: None,
            time: None,
            max_jobs: None,
            resources: Vec::new(),
            account: None,
            qos: None,
            extra: Vec::new(),
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

    /// Asks for a time limit, as Slurm writes one (`30`, `2:00:00`,
    /// `1-12:00:00`).
    ///
    /// # Errors
    /// [`Error::Spec`] for a time that does not parse.
    pub fn time(mut self, time: &str) -> Result<Self, Error> {
        self.time = Some(parse_time(time)?);
        Ok(self)
    }

    /// Asks for generic resources (`gpu:1`).
    #[must_use]
    pub fn gres(mut self, gres: &str) -> Self {
        self.gres = Some(gres.to_owned());
        self
    }

    /// CPUs per worker, which it runs tasks on.
    #[must_use]
    pub fn cpus(mut self, cpus: NonZeroUsize) -> Self {
        self.cpus = cpus;
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

    /// The account its jobs are charged to.
    #[must_use]
    pub fn account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// The quality of service of its jobs.
    #[must_use]
    pub fn qos(mut self, qos: &str) -> Self {
        self.qos = Some(qos.to_owned());
        self
    }

    /// Adds an `#SBATCH` line (`--constraint=a100`).
    #[must_use]
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }

    /// The time limit as Slurm keeps it: whole minutes, rounded up. Its
    /// workers' lifetime, and what the drain signal is set against.
    pub fn limit(&self) -> Option<Duration> {
        self.time
            .map(|t| Duration::from_secs(t.as_secs().div_ceil(60).max(1) * 60))
    }

    /// The `#SBATCH` options for this spec, before the job's name, logs and
    /// array: partition, account (`account` unless the spec has its own),
    /// QOS, CPUs, memory, GRES, time, then the extra lines.
    pub fn options(&self, account: Option<&str>) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(p) = &self.partition {
            o.push(format!("--partition={p}"));
        }
        if let Some(a) = self.account.as_deref().or(account) {
            o.push(format!("--account={a}"));
        }
        if let Some(q) = &self.qos {
            o.push(format!("--qos={q}"));
        }
        o.push(format!("--cpus-per-task={}", self.cpus));
        if let Some(m) = &self.memory {
            o.push(format!("--mem={}M", m.mebibytes()));
        }
        if let Some(g) = &self.gres {
            o.push(format!("--gres={g}"));
        }
        if let Some(limit) = self.limit() {
            o.push(format!("--time={}", format_time(limit)));
            o.push(format!(
                "--signal=B:USR1@{}",
                bob_pipelines_grid::drain_lead(limit).as_secs()
            ));
        }
        o.extend(self.extra.iter().map(|l| l.trim().to_owned()));
        o
    }
}

/// A word for an option's value: not empty, no spaces or commas.
fn word(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == ',')
}

impl Spec for PartitionSpec {
    type Raw = RawPartitionSpec;

    fn from_raw(raw: RawPartitionSpec) -> Result<Self, Error> {
        Ok(PartitionSpec {
            partition: raw.partition.filter(|p| !p.trim().is_empty()),
            cpus: raw.cpus.unwrap_or(NonZeroUsize::MIN),
            memory: match raw.memory.trim() {
                "" => None,
                m => Some(Memory::parse(m)?),
            },
            gres: raw.gres.filter(|g| !g.trim().is_empty()),
            time: match raw.time.trim() {
                "" => None,
                t => Some(parse_time(t)?),
            },
            max_jobs: raw.max_jobs,
            resources: raw.resources.names(),
            account: raw.account.filter(|a| !a.trim().is_empty()),
            qos: raw.qos.filter(|q| !q.trim().is_empty()),
            extra: raw.extra,
        })
    }

    fn check(&self, name: &str) -> Result<(), Error> {
        let bad = |what: &str, value: &str| {
            Err(Error::Spec {
                spec: name.to_owned(),
                reason: format!("{what} `{value}` is empty or has spaces or commas"),
            })
        };
        for (what, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
        ] {
            if let Some(v) = value {
                if !word(v) {
                    return bad(what, v);
                }
            }
        }
        if let Some(g) = &self.gres {
            if g.is_empty() || g.contains(char::is_whitespace) {
                return bad("gres", g);
            }
        }
        if self.time == Some(Duration::ZERO) {
            return Err(Error::Spec {
                spec: name.to_owned(),
                reason: "time is 0: no worker could run a task".to_owned(),
            });
        }
        check_common(name, self.max_jobs, &self.resources, &self.extra, "sbatch")
    }

    fn max_jobs(&self) -> Option<usize> {
        self.max_jobs
    }

    fn place(&self) -> Option<&str> {
        self.partition.as_deref()
    }

    fn threads(&self) -> NonZeroUsize {
        self.cpus
    }

    fn resources(&self) -> &[String] {
        &self.resources
    }

    fn lifetime(&self) -> Option<Duration> {
        self.limit()
    }
}

/// A partition spec's keys, as they come from a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartitionSpec {
    partition: Option<String>,
    cpus: Option<NonZeroUsize>,
    #[serde(default)]
    memory: String,
    gres: Option<String>,
    #[serde(default)]
    time: String,
    max_jobs: Option<usize>,
    #[serde(default)]
    resources: Resources,
    account: Option<String>,
    qos: Option<String>,
    #[serde(default, alias = "job_extra", alias = "job_extra_directives")]
    extra: Vec<String>,
}

fn preset(specs: Vec<(&str, PartitionSpec)>) -> PartitionSpecs {
    PartitionSpecs::new(specs).expect("presets are valid")
}

/// The tags bob's pipelines put on GPU steps (SGE queue names), which a
/// GPU spec provides so that they run unchanged.
const GPU_TAGS: [&str; 4] = ["gpu", "q_short_gpu", "q_gpu", "q_long_gpu"];

/// The `slurm` executor's specs: untagged work on `partition` (`None`: the
/// cluster's default), 8 GB, up to 128 jobs; steps tagged `gpu` or with
/// one of bob's SGE GPU queue names on partition `gpu` with one GPU (up to
/// 45 jobs, 30 GB).
pub fn partitions_default(partition: Option<&str>) -> PartitionSpecs {
    preset(vec![
        (
            "default",
            PartitionSpec::new(partition)
                .memory("8GB")
                .expect("a valid size")
                .max_jobs(128),
        ),
        ("gpu", gpu_spec()),
    ])
}

/// The `slurm-gpu` executor's specs (bob's `sge-gpu` on Slurm): untagged
/// work on partition `gpu` with one GPU (up to 45 jobs), and steps tagged
/// `cpu`, `q_1day` or `q_1week` on `partition` (`None`: the cluster's
/// default).
pub fn partitions_gpu(partition: Option<&str>) -> PartitionSpecs {
    let mut cpu = PartitionSpec::new(partition)
        .memory("4GB")
        .expect("a valid size")
        .max_jobs(48);
    for t in ["cpu", "q_1day", "q_1week"] {
        cpu = cpu.provides(t);
    }
    preset(vec![("default", gpu_spec()), ("cpu", cpu)])
}

/// Partition `gpu`, one GPU, 30 GB, up to 45 jobs, providing the tags of
/// GPU steps.
fn gpu_spec() -> PartitionSpec {
    let mut gpu = PartitionSpec::new(Some("gpu"))
        .gres("gpu:1")
        .max_jobs(45)
        .memory("30GB")
        .expect("a valid size");
    for t in GPU_TAGS {
        gpu = gpu.provides(t);
    }
    gpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_what_sbatch_reads() {
        let s = PartitionSpec::new(Some("gpu"))
            .gres("gpu:1")
            .memory("1.5G")
            .unwrap()
            .time("90")
            .unwrap()
            .qos("high")
            .extra("--constraint=a100");
        assert_eq!(
            s.options(Some("testproject")),
            [
                "--partition=gpu",
                "--account=testproject",
                "--qos=high",
                "--cpus-per-task=1",
                "--mem=1536M",
                "--gres=gpu:1",
                "--time=0-01:30:00",
                "--signal=B:USR1@60",
                "--constraint=a100",
            ]
        );
        let own = PartitionSpec::new(None).account("mine");
        assert_eq!(
            own.options(Some("bobrcs")),
            ["--account=mine", "--cpus-per-task=1"]
        );
    }

    #[test]
    fn toml_specs_name_the_spec_and_the_key() {
        let s = PartitionSpecs::from_toml(
            r#"
            [gpu]
            partition = "gpu"
            gres = "gpu:1"
            resources = { gpu = 1 }
            [default]
            memory = "8GB"
            time = "1-00:00:00"
            max_jobs = 4
            extra = ["--exclusive"]
            "#,
        )
        .unwrap();
        let (first, d) = s.iter().next().unwrap();
        assert_eq!(
            (first, d.partition.as_deref(), d.max_jobs),
            ("default", None, Some(4))
        );
        assert_eq!(d.time, Some(Duration::from_secs(86_400)));
        assert_eq!(s.get("gpu").unwrap().resources, ["gpu"]);

        let err = |text: &str| PartitionSpecs::from_toml(text).unwrap_err().to_string();
        let e = err("[default]\npartiton = \"cpu\"\n");
        assert!(e.contains("`default`") && e.contains("partiton"), "{e}");
        let e = err("[default]\ntime = \"forever\"\n");
        assert!(e.contains("`default`") && e.contains("forever"), "{e}");
        let e = err("[default]\nmemory = \"8 bananas\"\n");
        assert!(e.contains("`default`") && e.contains("8 bananas"), "{e}");
        let e = err("[gpu]\ngres = \"gpu:1\"\n");
        assert!(e.contains("`default`") && e.contains("missing"), "{e}");
        let e = err("[default]\npartition = \"a b\"\n");
        assert!(e.contains("partition `a b`"), "{e}");
        let e = err("[default]\nextra = [\"exclusive\"]\n");
        assert!(e.contains("exclusive") && e.contains("sbatch"), "{e}");
        let e = err("[default]\nmax_jobs = 0\n");
        assert!(e.contains("max_jobs"), "{e}");
    }

    #[test]
    fn presets_send_gpu_steps_to_the_gpu_partition() {
        let d = partitions_default(Some("cpu"));
        let gpu = d.get("gpu").unwrap();
        assert!(gpu.resources.iter().any(|r| r == "q_short_gpu"));
        assert_eq!(gpu.gres.as_deref(), Some("gpu:1"));
        assert_eq!(d.get("default").unwrap().partition.as_deref(), Some("cpu"));
        let g = partitions_gpu(None);
        assert_eq!(g.get("default").unwrap().partition.as_deref(), Some("gpu"));
        assert_eq!(g.get("cpu").unwrap().partition, None);
    }
}
