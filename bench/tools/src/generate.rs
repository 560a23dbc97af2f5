//! Writes ready-made HTTP/1.1 requests, each with its own `request_id` and a valid
//! HMAC-SHA256 signature, for the wrk script to send in turn.
//!
//! Requests go round-robin into one file per wrk thread, `PREFIX.0`, `PREFIX.1`, ...; each
//! record is a line `LENGTH REQUEST_ID` followed by exactly LENGTH bytes of request.

use std::fs::File;
use std::io::{BufWriter, Write};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Args;

const ID_FIELD: &[u8] = b"\"request_id\":\"";

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let body_path = args.text("body")?;
    let template = std::fs::read(body_path).map_err(|e| format!("{body_path}: {e}"))?;
    let (before, after) = split_at_id(&template).ok_or("body has no \"request_id\" string")?;
    let count = args.number("count")?;
    let threads = args.number("threads")?.max(1);
    let secret = args.text("secret")?.as_bytes();
    let (host, path, tag) = (args.text("host")?, args.text("path")?, args.text("tag")?);
    let prefix = args.text("out")?;

    let mut files = (0..threads)
        .map(|n| {
            let name = format!("{prefix}.{n}");
            File::create(&name)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut body = Vec::with_capacity(template.len() + 32);
    for n in 0..count {
        let id = format!("{tag}-{n:09}");
        body.clear();
        body.extend_from_slice(before);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(after);
        let request = request(host, path, &body, &sign(secret, &body));
        let file = &mut files[(n % threads) as usize];
        writeln!(file, "{} {id}", request.len())
            .and_then(|()| file.write_all(&request))
            .map_err(|e| e.to_string())?;
    }
    for mut file in files {
        file.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The body before and after the value of its first `"request_id"` string.
fn split_at_id(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = find(body, ID_FIELD)? + ID_FIELD.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    Some((&body[..start], &body[start + len..]))
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn request(host: &str, path: &str, body: &[u8], signature: &str) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         X-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}
