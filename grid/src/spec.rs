//! Specs of kinds of worker, by name: what every grid's specs share.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// A memory size (`8G`, `512M`), parsed from bob's forms (`8GB`, `8G`,
/// `512MB`, `4GiB`, `1.5G`); units are powers of 1024, as SGE and Slurm
/// read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    text: String,
    bytes: u64,
}

impl Memory {
    /// Parses a size: a number and a unit among K, M, G, T (any case), with
    /// or without `B` / `iB`.
    ///
    /// # Errors
    /// [`Error::Spec`] (with no spec named) for anything else.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = || Error::Spec {
            spec: String::new(),
            reason: format!(
                "memory `{s}` is not a size such as `8GB`, `8G`, `512MB` or `1.5G` \
                 (a number and a unit K, M, G or T)"
            ),
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = t.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_uppercase();
        let letter = match unit.as_str() {
            "K" | "KB" | "KIB" => 'K',
            "M" | "MB" | "MIB" => 'M',
            "G" | "GB" | "GIB" => 'G',
            "T" | "TB" | "TIB" => 'T',
            _ => return Err(bad()),
        };
        let scale = match letter {
            'K' => 1u64 << 10,
            'M' => 1 << 20,
            'G' => 1 << 30,
            _ => 1 << 40,
        };
        #[allow(
            clippy::cast_precision_loss,
            reason = "a scale of at most 2^40 is exact in an f64"
        )]
        let bytes = value * scale as f64;
        if !(bytes >= 1.0 && bytes < 2f64.powi(63)) {
            return Err(bad());
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked above: 1 <= bytes < 2^63"
        )]
        let bytes = bytes as u64;
        Ok(Memory {
            text: format!("{number}{letter}"),
            bytes,
        })
    }

    /// As the grids read it (`8G`, `1.5G`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// In bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// In whole MiB, rounded up (Slurm's `--mem` takes no fraction).
    pub fn mebibytes(&self) -> u64 {
        self.bytes.div_ceil(1 << 20)
    }
}

/// A time limit as Slurm writes one (and SGE reads `HH:MM:SS`): `MM`,
/// `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
///
/// # Errors
/// [`Error::Spec`] (with no spec named) for anything else.
pub fn parse_time(s: &str) -> Result<Duration, Error> {
    let bad = || Error::Spec {
        spec: String::new(),
        reason: format!(
            "time `{s}` is not a Slurm time such as `30` (minutes), `2:00:00` or `1-12:00:00`"
        ),
    };
    let t = s.trim();
    let num = |p: &str| -> Result<u64, Error> {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, t),
    };
    let parts = rest
        .split(':')
        .map(num)
        .collect::<Result<Vec<u64>, Error>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) | (Some(_), [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(_), [h]) => h * 3600,
        (Some(_), [h, m]) => h * 3600 + m * 60,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(days.unwrap_or(0) * 86_400 + secs))
}

/// `d` as Slurm writes a time (`D-HH:MM:SS`), rounded up to whole minutes:
/// Slurm's limits are whole minutes.
pub fn format_time(d: Duration) -> String {
    let minutes = d.as_secs().div_ceil(60).max(1);
    let (days, rest) = (minutes / 1440, minutes % 1440);
    format!("{days}-{:02}:{:02}:00", rest / 60, rest % 60)
}

/// The resources a spec's workers provide, as bob writes them in files:
/// `{"q_short_gpu": 1}`, `["q_short_gpu"]`, `"a,b"`, or `""` for none.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum Resources {
    /// None.
    #[default]
    None,
    /// Comma-separated names.
    Text(String),
    /// Names.
    List(Vec<String>),
    /// Names as the keys of a table (its values are ignored).
    Map(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
}

impl Resources {
    /// The names.
    pub fn names(self) -> Vec<String> {
        match self {
            Resources::None => Vec::new(),
            Resources::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Resources::List(l) => l,
            Resources::Map(m) => m.into_keys().collect(),
        }
    }
}

/// The checks every spec shares: `max_jobs` is not 0, resources are
/// words, and each extra directive is one line that starts with `-` (an
/// option of `what`, the submit command: `qsub`, `sbatch`).
///
/// # Errors
/// [`Error::Spec`] naming spec `name`.
pub fn check_common(
    name: &str,
    max_jobs: Option<usize>,
    resources: &[String],
    extra: &[String],
    what: &str,
) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::Spec {
            spec: name.to_owned(),
            reason,
        })
    };
    if max_jobs == Some(0) {
        return bad("max_jobs is 0: no worker could ever start".to_owned());
    }
    for r in resources {
        if r.is_empty() || r.contains(|c: char| c.is_whitespace() || c == ',') {
            return bad(format!("resource `{r}` is empty or has spaces or commas"));
        }
    }
    for line in extra {
        if !line.trim_start().starts_with('-') || line.contains('\n') {
            return bad(format!(
                "extra line `{line}` is not a {what} option (`-x value`) on one line"
            ));
        }
    }
    Ok(())
}

/// One kind of worker's spec on a grid (an SGE queue spec, a Slurm
/// partition spec).
pub trait Spec: Clone + Sized {
    /// Its keys as they come from a file (`#[serde(deny_unknown_fields)]`).
    type Raw: DeserializeOwned;
    /// The spec from its keys.
    ///
    /// # Errors
    /// [`Error::Spec`] for a value that does not parse (a memory, a time).
    fn from_raw(raw: Self::Raw) -> Result<Self, Error>;
    /// Checks the spec called `name`.
    ///
    /// # Errors
    /// [`Error::Spec`] naming it and what is wrong.
    fn check(&self, name: &str) -> Result<(), Error>;
    /// Jobs of this kind at most, if it says.
    fn max_jobs(&self) -> Option<usize>;
    /// Where its jobs go (a queue, a partition; `None`: the default).
    fn place(&self) -> Option<&str>;
    /// Threads each worker runs tasks on.
    fn threads(&self) -> std::num::NonZeroUsize;
    /// The resources its workers provide.
    fn resources(&self) -> &[String];
    /// How long each of its workers may live (its time limit as the grid
    /// keeps it), if limited.
    fn lifetime(&self) -> Option<Duration>;
}

/// The specs of a cluster's kinds of worker, by name, in order; `default`
/// serves untagged tasks (bob's `sge_job_spec`), and comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specs<S> {
    specs: Vec<(String, S)>,
}

impl<S: Spec> Specs<S> {
    /// Specs from `(name, spec)` pairs; one must be called `default`.
    ///
    /// # Errors
    /// [`Error::Spec`] when `default` is missing, a name repeats or is not
    /// a word, or a spec is invalid.
    pub fn new<N: Into<String>>(specs: impl IntoIterator<Item = (N, S)>) -> Result<Self, Error> {
        let mut out: Vec<(String, S)> = Vec::new();
        for (name, spec) in specs {
            let name = name.into();
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::Spec {
                    spec: name,
                    reason: "a spec's name must be a word (`default`, `gpu`)".to_owned(),
                });
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(Error::Spec {
                    spec: name,
                    reason: "this name is given twice".to_owned(),
                });
            }
            spec.check(&name)?;
            out.push((name, spec));
        }
        let Some(i) = out.iter().position(|(n, _)| n == "default") else {
            let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Spec {
                spec: "default".to_owned(),
                reason: format!(
                    "missing: the specs ({}) need one called `default`, for untagged tasks",
                    names.join(", ")
                ),
            });
        };
        let default = out.remove(i);
        out.insert(0, default);
        Ok(Specs { specs: out })
    }

    /// Specs from TOML, one table per spec (`[default]`, `[gpu]`) with the
    /// spec's keys.
    ///
    /// # Errors
    /// [`Error::Spec`] naming the spec and the key: unknown keys, wrong
    /// types, bad values, and everything [`new`](Self::new) checks.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e| Error::Spec {
            spec: String::new(),
            reason: format!("not TOML: {e}"),
        })?;
        let mut specs = Vec::new();
        for (name, item) in doc.iter() {
            let bad = |reason: String| Error::Spec {
                spec: name.to_owned(),
                reason,
            };
            let table = item
                .as_table_like()
                .ok_or_else(|| bad("must be a table of the spec's keys ([name] key = …)".into()))?;
            let mut one = toml_edit::Table::new();
            for (k, v) in table.iter() {
                one.insert(k, v.clone());
            }
            let raw: S::Raw = toml_edit::de::from_document(toml_edit::DocumentMut::from(one))
                .map_err(|e| bad(e.message().to_owned()))?;
            specs.push((
                name.to_owned(),
                S::from_raw(raw).map_err(|e| e.in_spec(name))?,
            ));
        }
        Self::new(specs)
    }

    /// The specs in order, `default` first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &S)> {
        self.specs.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The spec called `name`.
    pub fn get(&self, name: &str) -> Option<&S> {
        self.specs.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Spec number `kind` (a kind of worker), with its name.
    ///
    /// # Errors
    /// [`Error::Spec`] when there is no spec with this number.
    pub fn nth(&self, kind: usize) -> Result<(&str, &S), Error> {
        self.iter().nth(kind).ok_or_else(|| Error::Spec {
            spec: kind.to_string(),
            reason: "no spec with this number".to_owned(),
        })
    }

    /// The number of spec `name`, in order.
    ///
    /// # Errors
    /// [`Error::Spec`] for a spec that does not exist, naming those that do.
    pub fn index(&self, name: &str) -> Result<usize, Error> {
        self.specs
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.specs.iter().map(|(n, _)| n.as_str()).collect();
                Error::Spec {
                    spec: name.to_owned(),
                    reason: format!("no such spec; the specs are {}", names.join(", ")),
                }
            })
    }

    /// These specs with spec `name` changed by `edit`, the rest as they were:
    /// a preset adjusted in part instead of rewritten whole.
    ///
    /// # Errors
    /// [`Error::Spec`] for a spec that does not exist (naming those that do),
    /// and what the edit or the spec's checks say.
    pub fn with<E: SpecEdit<S>>(
        mut self,
        name: &str,
        edit: impl FnOnce(S) -> E,
    ) -> Result<Self, Error> {
        let i = self.index(name)?;
        let spec = edit(self.specs[i].1.clone())
            .into_spec()
            .map_err(|e| e.in_spec(name))?;
        spec.check(name)?;
        self.specs[i].1 = spec;
        Ok(self)
    }

    /// One kind of worker per spec, in order: named `name`, or `name
    /// (place)` when its queue or partition is named otherwise; at most its
    /// `max_jobs` (else the largest of the specs), its threads, resources
    /// and lifetime; at least one worker of `default`'s (bob's `min_jobs =
    /// 1`).
    pub fn kinds(&self) -> Vec<bob_pipelines_executor::distributed::WorkerKind> {
        let fallback = self.max_jobs();
        let mut kinds: Vec<_> = self
            .iter()
            .map(|(name, s)| {
                let label = match s.place() {
                    Some(p) if p != name => format!("{name} ({p})"),
                    _ => name.to_owned(),
                };
                let mut k = bob_pipelines_executor::distributed::WorkerKind::new(
                    &label,
                    s.max_jobs().unwrap_or(fallback),
                    s.threads(),
                );
                k.resources = s.resources().to_vec();
                k.lifetime = s.lifetime();
                k
            })
            .collect();
        kinds[0].min = 1;
        kinds
    }

    /// The largest `max_jobs` of the specs (bob's `get_max_jobs`), 1 if none has one.
    pub fn max_jobs(&self) -> usize {
        self.specs
            .iter()
            .filter_map(|(_, s)| s.max_jobs())
            .max()
            .unwrap_or(1)
    }
}

/// What an edit in [`Specs::with`] returns: the spec, or the result of a
/// builder method that can fail (a memory that does not parse).
pub trait SpecEdit<S> {
    /// The edited spec.
    ///
    /// # Errors
    /// The builder's error.
    fn into_spec(self) -> Result<S, Error>;
}

impl<S: Spec> SpecEdit<S> for S {
    fn into_spec(self) -> Result<S, Error> {
        Ok(self)
    }
}

impl<S: Spec> SpecEdit<S> for Result<S, Error> {
    fn into_spec(self) -> Result<S, Error> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_bobs_forms_and_refuses_the_rest() {
        assert_eq!(Memory::parse("8GB").unwrap().as_str(), "8G");
        assert_eq!(Memory::parse("8G").unwrap().as_str(), "8G");
        assert_eq!(Memory::parse("512mb").unwrap().bytes(), 512 << 20);
        assert_eq!(Memory::parse("1.5GiB").unwrap().as_str(), "1.5G");
        for bad in ["", "GB", "8", "8XB", "eight GB", "-1G", "0G", "1.2.3G"] {
            let e = Memory::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("8GB"), "{e}");
        }
    }

    #[test]
    fn times_are_slurms() {
        let secs = |t: &str| parse_time(t).unwrap().as_secs();
        assert_eq!(secs("30"), 1800);
        assert_eq!(secs("5:30"), 330);
        assert_eq!(secs("2:00:00"), 7200);
        assert_eq!(secs("1-12"), 86_400 + 12 * 3600);
        assert_eq!(secs("1-0:30"), 86_400 + 1800);
        assert_eq!(secs("2-00:00:10"), 2 * 86_400 + 10);
        for bad in ["", "1:2:3:4", "a", "1-", "-1", "1h", "1-2:3:4:5"] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("2:00:00"),
                "{e}"
            );
        }
        assert_eq!(format_time(Duration::from_secs(7200)), "0-02:00:00");
        assert_eq!(format_time(Duration::from_secs(5)), "0-00:01:00");
        assert_eq!(format_time(Duration::from_secs(86_400 + 61)), "1-00:02:00");
    }

    #[test]
    fn slurm_gets_whole_mebibytes() {
        assert_eq!(Memory::parse("1.5G").unwrap().mebibytes(), 1536);
        assert_eq!(Memory::parse("100K").unwrap().mebibytes(), 1);
    }
}
