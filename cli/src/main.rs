//! The `bob-pipelines` command: the settings file bob's `bob config` edits,
//! and checks of a checkpoint (features) folder.

use std::process::ExitCode;

use std::path::PathBuf;
use std::time::Instant;

use bob_pipelines::checkpoint::{store, verify};
use bob_pipelines::grid::bobrc::Rc;
use clap::{Parser, Subcommand};

/// bob-pipelines' command line.
#[derive(Parser)]
#[command(name = "bob-pipelines", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Settings in ~/.config/bobrc.toml (or $BOBRC), as bob's `bob config`.
    Config {
        #[command(subcommand)]
        action: Config,
    },
    /// Checks or counts a features folder (`<out>/features`).
    Checkpoint {
        #[command(subcommand)]
        action: Checkpoint,
    },
}

#[derive(Subcommand)]
enum Checkpoint {
    /// Opens every checkpoint: names corrupt or partial files with their keys
    /// and stale temp files; exit status 1 when anything is wrong.
    Verify {
        /// The features folder (its sub-folders are the steps).
        dir: PathBuf,
    },
    /// Counts files, sizes and times per step, from metadata only.
    Stats {
        /// The features folder.
        dir: PathBuf,
    },
    /// Removes failure markers, so the next run tries those samples again
    /// (a missing file restored, a transient error gone).
    Clean {
        /// Remove the failure markers (required: nothing else is removed).
        #[arg(long, required = true)]
        failed: bool,
        /// Only those of this step.
        #[arg(long)]
        step: Option<String>,
        /// The features folder.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum Config {
    /// Prints every setting, `key = value`.
    Show,
    /// Prints one setting's value (exit status 1 when it is not set).
    Get {
        /// A dotted key, such as `sge.project`.
        key: String,
    },
    /// Sets a setting (`bob-pipelines config set sge.project NAME`).
    Set {
        /// A dotted key, such as `sge.project`.
        key: String,
        /// Its value (a string).
        value: String,
    },
    /// Removes a setting.
    Unset {
        /// A dotted key.
        key: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bob-pipelines: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Config { action } => config(action),
        Command::Checkpoint { action } => checkpoint(action),
    }
}

fn checkpoint(action: Checkpoint) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    match action {
        Checkpoint::Verify { dir } => {
            let v = verify::verify(&dir)?;
            println!("{v}");
            eprintln!("checked {} files in {:.2?}", v.files(), t0.elapsed());
            Ok(if v.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Checkpoint::Stats { dir } => {
            println!("{}", verify::stats(&dir)?);
            eprintln!("in {:.2?}", t0.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Checkpoint::Clean {
            failed: _,
            step,
            dir,
        } => {
            let n = store::clean_failed(&dir, step.as_deref())?;
            println!("removed {n} failure markers: the next run tries those samples again");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config(action: Config) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut rc = Rc::load()?;
    match action {
        Config::Show => {
            println!("# {}", rc.path().display());
            print!("{}", rc.show());
        }
        Config::Get { key } => match rc.get(&key) {
            Some(v) => println!("{v}"),
            None => {
                eprintln!("`{key}` is not set in {}", rc.path().display());
                return Ok(ExitCode::FAILURE);
            }
        },
        Config::Set { key, value } => {
            rc.set(&key, &value)?;
            rc.save()?;
        }
        Config::Unset { key } => {
            if !rc.unset(&key) {
                eprintln!("`{key}` was not set in {}", rc.path().display());
                return Ok(ExitCode::FAILURE);
            }
            rc.save()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
