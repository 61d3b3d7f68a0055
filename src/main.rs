//! `switchyard`: the gateway binary.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::config::{Settings, DEFAULT_CONFIG};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard: an OpenAI-compatible LLM gateway on Pingora.
///
/// With no arguments it serves the embedded default configuration: the proxy on
/// 127.0.0.1:8080, the admin listener on 127.0.0.1:9901, in-memory state and the
/// built-in `mock` model. Cloud providers whose credential variable is set
/// (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, GROQ_API_KEY, CEREBRAS_API_KEY,
/// OPENROUTER_API_KEY, GITHUB_TOKEN) are registered automatically.
///
/// Signals: SIGTERM stops after in-flight requests finish (at most
/// `server.shutdown_grace_secs`), with /health/ready answering 503 meanwhile; SIGINT
/// stops at once; SIGQUIT hands the listening sockets to a new process started with
/// `--upgrade` (zero-downtime upgrade, see docs/operations.md).
#[derive(Parser, Debug)]
#[command(name = "switchyard", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). Default: the embedded conf/switchyard.toml.
    #[arg(short, long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Take over the listening sockets of a running instance (zero-downtime upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration and exit: 0 when valid; otherwise 2 with the field path
    /// and the bad value (never the value of a field that holds a secret). A credential
    /// that cannot be sent (say, with a trailing newline) fails here, though a running
    /// gateway only leaves its provider out.
    Check {
        /// Configuration file (default: the embedded one).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => {
            let path = config.or(cli.config);
            match Settings::load(path.as_deref()) {
                Ok(s) if !s.problems.is_empty() => {
                    for w in &s.warnings {
                        eprintln!("warning: {w}");
                    }
                    for p in &s.problems {
                        eprintln!("switchyard: invalid configuration: {p}");
                    }
                    ExitCode::from(2)
                }
                Ok(s) => {
                    for w in &s.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "configuration ok: {} provider(s), local backend {}",
                        s.providers.len(),
                        s.local.as_ref().map_or("none", |l| l.kind.as_str())
                    );
                    if s.control.enabled {
                        let c = &s.control;
                        println!(
                            "controller on: engine {}, instance {}, images {}",
                            c.docker_host,
                            c.instance,
                            c.profiles
                                .iter()
                                .map(|p| format!("{}={}", p.kind.as_str(), p.image))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchyard: invalid configuration: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::DefaultConfig) => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        None => {
            let settings = match Settings::load(cli.config.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("switchyard: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            match switchyard::server::run(settings, cli.upgrade, cli.daemon) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
