//! `hookgate deliveries list/show/retry`: dead letters and their attempts, read and replayed
//! through the running gateway's admin API.

use serde::Deserialize;

use super::CliResult;
use super::admin_client::{AdminClient, with_query};
use super::table::{self, clip, shown, time};
use crate::config::Config;
use crate::store::inspect::{DeliveryDetail, DeliveryView, EventDetail, RetriedAll};

/// Dead letters replayed per request by `retry --all`.
const BATCH: usize = 500;

/// `deliveries`' subcommands and where the admin API is.
#[derive(Debug, clap::Args)]
pub(super) struct DeliveriesArgs {
    /// The admin API's base URL; defaults to the configured `[admin] listen`.
    #[arg(long, global = true)]
    admin_url: Option<String>,
    #[command(subcommand)]
    command: DeliveriesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DeliveriesCommand {
    /// List deliveries in one state, newest first.
    List(ListArgs),
    /// Show an event (by event id or delivery id) with each delivery and its attempts.
    Show {
        /// An event id, or a delivery id.
        id: String,
    },
    /// Replay one dead letter, or all that match.
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// `pending`, `delivered`, `dead`, `paused`, or `all`.
    #[arg(long, default_value = "dead",
          value_parser = ["pending", "delivered", "dead", "paused", "all"])]
    state: String,
    /// Only deliveries to this upstream.
    #[arg(long)]
    upstream: Option<String>,
    /// Only events from this route.
    #[arg(long)]
    route: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

#[derive(Debug, clap::Args)]
struct RetryArgs {
    /// The delivery to replay (its number; `deliveries show EVENT_ID` lists them).
    #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = delivery_id)]
    id: Option<i64>,
    /// Replay every dead letter matching the filters.
    #[arg(long)]
    all: bool,
    /// With `--all`: only deliveries to this upstream.
    #[arg(long, requires = "all")]
    upstream: Option<String>,
    /// With `--all`: only events from this route.
    #[arg(long, requires = "all")]
    route: Option<String>,
}

/// A delivery id; an event id in its place is answered with where to find its deliveries.
fn delivery_id(text: &str) -> Result<i64, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not a delivery id, which is a number; \
             `hookgate deliveries show {text}` lists an event's deliveries with their ids"
        )
    })
}

#[derive(Deserialize)]
struct Listed {
    deliveries: Vec<DeliveryView>,
}

#[derive(Deserialize)]
struct Replayed {
    delivery: DeliveryView,
}

/// Runs one `deliveries` subcommand.
pub(super) async fn deliveries(config: &Config, args: &DeliveriesArgs) -> CliResult {
    let admin = AdminClient::new(config, args.admin_url.as_deref())?;
    match &args.command {
        DeliveriesCommand::List(list_args) => list(&admin, list_args).await,
        DeliveriesCommand::Show { id } => show(&admin, id).await,
        DeliveriesCommand::Retry(RetryArgs { id: Some(id), .. }) => retry(&admin, *id).await,
        DeliveriesCommand::Retry(all) => retry_all(&admin, all).await,
    }
}

async fn list(admin: &AdminClient, args: &ListArgs) -> CliResult {
    let state = (args.state != "all").then_some(args.state.as_str());
    let limit = args.limit.to_string();
    let path = with_query(
        "/api/deliveries",
        &[
            ("state", state),
            ("upstream", args.upstream.as_deref()),
            ("route", args.route.as_deref()),
            ("limit", Some(&limit)),
        ],
    );
    let listed: Listed = admin.get(&path).await?;
    if listed.deliveries.is_empty() {
        say!("no {} deliveries", state.unwrap_or("matching"));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listed.deliveries.iter().map(delivery_row).collect();
    table::print(
        &[
            "ID",
            "STATE",
            "UPSTREAM",
            "ROUTE",
            "ATTEMPTS",
            "LAST",
            "UPDATED (UTC)",
            "EVENT",
        ],
        &rows,
    );
    Ok(())
}

fn delivery_row(d: &DeliveryView) -> Vec<String> {
    vec![
        d.id.to_string(),
        d.state.to_string(),
        d.upstream.clone(),
        d.route.clone(),
        d.attempts.to_string(),
        clip(&last_outcome(d), 40),
        time(d.updated_at),
        d.event_id.clone(),
    ]
}

/// The last answer, or why the last attempt had none.
fn last_outcome(d: &DeliveryView) -> String {
    match (d.last_status, &d.last_error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.clone(),
        (None, None) => "-".into(),
    }
}

async fn show(admin: &AdminClient, id: &str) -> CliResult {
    let path = format!("/api/events/{}", encode_segment(id));
    let detail: EventDetail = admin.get(&path).await?;
    let event = &detail.event;
    // What a sender chose (the dedup key, the content type, headers) is shown with its
    // control characters written out.
    say!("event      {}", event.id);
    say!("route      {}", event.route);
    say!("received   {} UTC", time(event.received_at));
    say!("size       {} bytes", event.size);
    say!("dedup key  {}", shown(&event.dedup_key));
    say!(
        "type       {}",
        shown(event.content_type.as_deref().unwrap_or("-"))
    );
    say!("client     {}", shown(&detail.client_ip));
    if let Some(headers) = detail.headers.as_object() {
        say!("headers");
        for (name, value) in headers {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            say!("  {}: {}", shown(name), shown(&value));
        }
    }
    for delivery in &detail.deliveries {
        print_delivery(delivery);
    }
    Ok(())
}

fn print_delivery(detail: &DeliveryDetail) {
    let d = &detail.delivery;
    say!(
        "\ndelivery {} to {}: {} after {} attempt(s)",
        d.id,
        d.upstream,
        d.state,
        d.attempts
    );
    if detail.attempts.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = detail
        .attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                time(a.at),
                a.status.map_or_else(|| "-".into(), |s| s.to_string()),
                format!("{}ms", a.latency_ms),
                clip(a.error.as_deref().unwrap_or("-"), 40),
                clip(&format!("{:?}", a.response_head), 60),
            ]
        })
        .collect();
    table::print(
        &["#", "AT (UTC)", "STATUS", "LATENCY", "ERROR", "ANSWER"],
        &rows,
    );
}

async fn retry(admin: &AdminClient, id: i64) -> CliResult {
    let replayed: Replayed = admin.post(&format!("/api/deliveries/{id}/retry")).await?;
    let d = &replayed.delivery;
    say!(
        "delivery {id} to {} replayed: {}, attempt {} comes next",
        d.upstream,
        d.state,
        d.attempts + 1
    );
    Ok(())
}

async fn retry_all(admin: &AdminClient, args: &RetryArgs) -> CliResult {
    let (mut after, mut total) = (0_i64, 0_u64);
    let batch = BATCH.to_string();
    loop {
        let cursor = after.to_string();
        let path = with_query(
            "/api/deliveries/retry",
            &[
                ("state", Some("dead")),
                ("upstream", args.upstream.as_deref()),
                ("route", args.route.as_deref()),
                ("limit", Some(&batch)),
                ("after", Some(&cursor)),
            ],
        );
        let step: RetriedAll = admin.post(&path).await?;
        total += step.retried;
        match step.last_id {
            Some(last) if step.remaining > 0 => {
                esay!("replayed {total}, {} left…", step.remaining);
                after = last;
            }
            _ => break,
        }
    }
    match total {
        0 => say!("no dead letters match"),
        n => say!("replayed {n} dead letter(s)"),
    }
    Ok(())
}

/// A path segment with the characters that would change the path percent-encoded.
fn encode_segment(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
