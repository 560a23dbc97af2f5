//! Helpers for hookgate's benchmark harness (`bench/run.sh`): a request generator, a
//! recording upstream, a report over send and receipt times, and a test certificate.

mod cert;
mod generate;
mod report;
mod upstream;

use std::collections::HashMap;
use std::process::ExitCode;

/// `--name value` pairs after the subcommand.
pub(crate) struct Args(HashMap<String, String>);

impl Args {
    fn parse(items: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut items = items.iter();
        while let Some(name) = items.next() {
            let key = name
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --name, got {name}"))?;
            let value = items
                .next()
                .ok_or_else(|| format!("{name}: missing value"))?;
            map.insert(key.to_owned(), value.clone());
        }
        Ok(Args(map))
    }

    pub(crate) fn text(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub(crate) fn number(&self, name: &str) -> Result<u64, String> {
        self.text(name)?
            .parse()
            .map_err(|e| format!("--{name}: {e}"))
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("usage: hookgate-bench generate|upstream|report|cert --name value ...");
        return ExitCode::from(2);
    };
    let outcome = Args::parse(rest).and_then(|args| match command.as_str() {
        "generate" => generate::run(&args),
        "upstream" => upstream::run(&args),
        "report" => report::run(&args),
        "cert" => cert::run(&args),
        other => Err(format!("unknown command {other}")),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookgate-bench {command}: {error}");
            ExitCode::FAILURE
        }
    }
}
