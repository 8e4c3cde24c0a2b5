//! The builder methods every grid launcher has, written once.

/// Writes the builder methods every grid launcher has into an `impl`
/// block: `min_jobs`, `max_jobs`, `report_pending_after`, `log_dir`,
/// `logs`, `job_name`, `program`, `args`, `prologue`, `forward_env`. The
/// type must have the fields `specs` ([`Specs`](crate::Specs)), `kinds`
/// (`Vec<WorkerKind>`), `jobs` ([`Jobs`](crate::Jobs)), `log_dir`
/// (`PathBuf`), `job_name` (`String`), `program` (`Option<PathBuf>`), `args`
/// (`Option<Vec<OsString>>`) and `prologue` (`Vec<String>`). `$grid` names
/// the grid in the docs; `$name_option` is its job-name option.
#[macro_export]
macro_rules! launcher_builders {
    ($grid:literal, $name_option:literal) => {
        /// Keeps at least `n` workers of spec `spec` (0 to release them all
        /// when idle).
        ///
        /// # Errors
        /// [`Error::Spec`]($crate::Error::Spec) for a spec that does not exist.
        pub fn min_jobs(mut self, spec: &str, n: usize) -> Result<Self, $crate::Error> {
            let i = self.specs.index(spec)?;
            self.kinds[i].min = n;
            Ok(self)
        }

        /// At most `n` workers of spec `spec` at once.
        ///
        /// # Errors
        /// [`Error::Spec`]($crate::Error::Spec) for a spec that does not exist.
        pub fn max_jobs(mut self, spec: &str, n: usize) -> Result<Self, $crate::Error> {
            let i = self.specs.index(spec)?;
            self.kinds[i].max = n;
            Ok(self)
        }

        #[doc = concat!("After how long a waiting job's reason (", $grid, "'s) is shown in the run's")]
        /// progress and report (default 60 s).
        #[must_use]
        pub fn report_pending_after(mut self, after: ::std::time::Duration) -> Self {
            self.jobs.report_after = after;
            self
        }

        /// Where jobs write their output (created if missing). It must be
        /// on a file system the nodes see.
        #[must_use]
        pub fn log_dir(mut self, dir: impl Into<::std::path::PathBuf>) -> Self {
            self.settings.log_dir = dir.into();
            self
        }

        /// The folder the job logs go to.
        pub fn logs(&self) -> &::std::path::Path {
            &self.settings.log_dir
        }

        #[doc = concat!("The job name prefix (`", $name_option, "`; the spec's name is appended).")]
        #[must_use]
        pub fn job_name(mut self, name: &str) -> Self {
            name.clone_into(&mut self.settings.job_name);
            self
        }

        /// Runs another program as the workers (it must build the same
        /// pipeline).
        #[must_use]
        pub fn program(mut self, program: impl Into<::std::path::PathBuf>) -> Self {
            self.settings.program = Some(program.into());
            self
        }

        /// Starts workers with these arguments instead of the driver's own.
        #[must_use]
        pub fn args<I: IntoIterator<Item = S>, S: Into<::std::ffi::OsString>>(
            mut self,
            args: I,
        ) -> Self {
            self.settings.args = Some(args.into_iter().map(Into::into).collect());
            self
        }

        /// A shell line run in each job before the worker starts (bob's
        /// `job_script_prologue`: `module load cuda`, `export X=1`).
        #[must_use]
        pub fn prologue(mut self, line: &str) -> Self {
            self.settings.prologue.push(line.to_owned());
            self
        }

        /// Passes the driver's value of the variable `name` to the workers.
        #[must_use]
        pub fn forward_env(self, name: &str) -> Self {
            match ::std::env::var(name) {
                Ok(v) => self.prologue(&format!("export {name}={}", $crate::quote(&v))),
                Err(_) => self,
            }
        }
    };
}
