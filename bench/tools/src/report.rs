//! Joins the wrk script's send times with the upstream's receipt times.
//!
//! Prints `key=value` lines: deliveries received, distinct (path, request_id) pairs, copies
//! received more than once, deliveries per second (first to last receipt), and the
//! end-to-end latency from the moment a request was sent to its receipt upstream.

use std::collections::HashMap;

use crate::Args;

pub(crate) fn run(args: &Args) -> Result<(), String> {
    // Every send time of each request_id, for files that wrapped and sent it again.
    let mut sent: HashMap<String, Vec<u128>> = HashMap::new();
    for path in args.text("sent")?.split(',').filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        for line in text.lines() {
            if let Some((id, at)) = line.split_once(' ') {
                sent.entry(id.to_owned()).or_default().push(nanos(at)?);
            }
        }
    }
    let recv_path = args.text("received")?;
    let text = std::fs::read_to_string(recv_path).map_err(|e| format!("{recv_path}: {e}"))?;

    let mut seen: HashMap<(&str, &str), u32> = HashMap::new();
    let (mut first, mut last) = (u128::MAX, 0u128);
    let mut latencies = Vec::new();
    let mut unknown = 0u64;
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(path), Some(id), Some(at)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let at: u128 = at.parse().map_err(|e| format!("{recv_path}: {e}"))?;
        *seen.entry((path, id)).or_default() += 1;
        first = first.min(at);
        last = last.max(at);
        match sent.get(id).and_then(|times| sent_before(times, at)) {
            Some(sent_at) => latencies.push((at - sent_at) as f64 / 1e6),
            None => unknown += 1,
        }
    }

    let received: u64 = seen.values().map(|&n| u64::from(n)).sum();
    let repeated = seen.values().filter(|&&n| n > 1).count();
    let span = (last.saturating_sub(first)) as f64 / 1e9;
    latencies.sort_by(f64::total_cmp);
    println!("sent={}", sent.len());
    println!("received={received}");
    println!("distinct={}", seen.len());
    println!("repeated={repeated}");
    println!("unknown={unknown}");
    println!("span_s={span:.3}");
    let rate = if span > 0.0 {
        received as f64 / span
    } else {
        0.0
    };
    println!("delivered_per_s={rate:.0}");
    println!("e2e_p50_ms={:.2}", percentile(&latencies, 0.50));
    println!("e2e_p99_ms={:.2}", percentile(&latencies, 0.99));
    Ok(())
}

/// The latest send time not after `at`: the copy this receipt answers.
fn sent_before(times: &[u128], at: u128) -> Option<u128> {
    times.iter().copied().filter(|&t| t <= at).max()
}

/// `SECONDS.NANOS` as written by the wrk script.
fn nanos(text: &str) -> Result<u128, String> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let secs: u128 = secs.parse().map_err(|e| format!("send time {text}: {e}"))?;
    let frac: u128 = frac.parse().map_err(|e| format!("send time {text}: {e}"))?;
    Ok(secs * 1_000_000_000 + frac)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
