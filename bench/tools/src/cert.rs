//! A self-signed certificate for `127.0.0.1`, shared by nginx and hookgate in a run.

use crate::Args;

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let pair = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let write =
        |path: &str, text: String| std::fs::write(path, text).map_err(|e| format!("{path}: {e}"));
    write(args.text("cert")?, pair.cert.pem())?;
    write(args.text("key")?, pair.signing_key.serialize_pem())
}
