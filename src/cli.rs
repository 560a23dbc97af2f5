//! The `hookgate` command line: `run`, `check`, `sign`, `send`, `callback-url`, `demo`,
//! and `deliveries`.

/// Prints a line to standard output. A reader that went away, as `| head -1` does, ends
/// the program quietly instead of with a panic.
macro_rules! say {
    () => {
        $crate::cli::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

/// Prints a line to standard error, ignoring a stream that cannot be written: the line is
/// a message about the program's end, and there is nowhere else to say it.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod admin_client;
mod callback;
mod check;
mod deliveries;
mod demo;
mod send;
mod table;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::config::secret::Reading;
use crate::telemetry::LogTo;

/// The body of [`say!`].
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            esay!("hookgate: cannot write to standard output: {error}");
            std::process::exit(1);
        }
    }
}

/// A TLS-terminating webhook gateway: verify, deduplicate, store, fan out.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version)]
struct Cli {
    /// The configuration file.
    #[arg(short, long, global = true, default_value = "gateway.toml")]
    config: PathBuf,
    /// Log as JSON lines instead of human-readable lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and print the routes it would serve.
    Check,
    /// Print the URL and headers that make a body pass a route's verification.
    Sign(send::Target),
    /// Sign a body for a route and POST it to the gateway.
    Send(send::SendArgs),
    /// Mint a signed callback URL for a `signed-url` route (for senders such as Pulse).
    CallbackUrl(callback::CallbackArgs),
    /// Start the shipped configuration with sample upstreams and send sample webhooks.
    Demo,
    /// Inspect deliveries and replay dead letters, through the running gateway's admin API.
    Deliveries(deliveries::DeliveriesArgs),
}

/// Runs the command line; the exit code says whether it succeeded.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own report; its logs would only bury it.
    let (level, json) = match cli.command {
        Some(Command::Demo) => ("error".to_owned(), false),
        Some(Command::Deliveries(_)) => ("warn".to_owned(), false),
        _ => {
            let file = crate::config::LogSettings::peek(&cli.config);
            (file.level.unwrap_or_else(|| "info".to_owned()), file.json)
        }
    };
    // Only the gateway logs to standard output; every other command prints its result
    // there, which a log line (a development secret created, say) must not get into.
    let to = match cli.command {
        None | Some(Command::Run) => LogTo::Stdout,
        Some(_) => LogTo::Stderr,
    };
    crate::telemetry::init(cli.log_json || json, &level, to);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            esay!("hookgate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(&cli.config).await,
            Command::Check => check::check(&cli.config),
            Command::Sign(target) => send::sign(&load_lenient(&cli.config)?, &target),
            Command::Send(args) => send::send(&load_lenient(&cli.config)?, &args).await,
            Command::CallbackUrl(args) => {
                callback::callback_url(&load_lenient(&cli.config)?, &args)
            }
            Command::Demo => demo::demo().await,
            Command::Deliveries(args) => {
                deliveries::deliveries(&load_lenient(&cli.config)?, &args).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            esay!("hookgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Errors of the command line are printed as they are.
type CliResult = Result<(), String>;

fn load(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

/// Loads the file for a command that uses only some of its secrets: those it cannot read
/// are stood in for, and the command asks for the ones it needs with [`Config::require`].
/// An operator's shell seldom holds every secret the service is given.
fn load_lenient(path: &Path) -> Result<Config, String> {
    Config::load_with(path, Reading::Lenient).map_err(|e| e.to_string())
}

async fn run(path: &Path) -> CliResult {
    let config = load(path)?;
    crate::gateway::run(path, &config)
        .await
        .map_err(|e| e.to_string())
}
