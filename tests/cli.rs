//! The command line as a user runs it: `check`, `send`, `sign` and `callback-url`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

fn hookgate(config: &Path, args: &[&str]) -> Output {
    run_command(config, args)
}

/// A copy of the shipped `gateway.toml` in a folder of its own, so that what a start or
/// `sign` creates beside it lands there.
fn shipped_configuration() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml"),
        &path,
    )
    .unwrap();
    (dir, path)
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn check_accepts_the_shipped_configuration_and_lists_its_routes() {
    let (dir, path) = shipped_configuration();
    let out = hookgate(&path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("route pulse POST /hooks/pulse verify=token dedup=json:/request_id"),
        "{shown}"
    );
    assert!(shown.contains("upstream alerts"), "{shown}");
    // The development token marked `create = true` is made by a start, not by a check.
    assert!(!dir.path().join("certs/pulse.token").exists());
}

/// Writes `toml` and runs `check`; returns what it printed, asserting it failed.
fn check_fails(toml: &str) -> String {
    let site = Site::new(toml);
    let out = hookgate(&site.config_path, &["check"]);
    assert!(!out.status.success(), "check passed:\n{}", text(&out));
    text(&out)
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let base = server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "");

    let typo = base.clone() + &pulse_route("[\"u\"]").replace("limited_status", "limted_status");
    let shown_typo = check_fails(&typo);
    assert!(
        shown_typo.contains("did you mean `limited_status`?"),
        "{shown_typo}"
    );
    let shown = check_fails(&typo);
    assert!(
        shown.contains("gateway.toml:") && shown.contains("limted_status"),
        "{shown}"
    );

    let shown = check_fails(&(base.clone() + &pulse_route("[\"nowhere\"]")));
    assert!(
        shown.contains("routes[0].upstreams[0]") && shown.contains("nowhere"),
        "{shown}"
    );

    let bad_duration =
        base.replace("initial = \"50ms\"", "initial = \"fast\"") + &pulse_route("[\"u\"]");
    let shown = check_fails(&bad_duration);
    assert!(
        shown.contains(":8:")
            && shown.contains("upstreams.u.retry.initial")
            && shown.contains("fast"),
        "{shown}"
    );

    let env_secret = base
        + &pulse_route("[\"u\"]").replace(
            "{ file = \"pulse.token\" }",
            "{ env = \"HOOKGATE_SURELY_UNSET_VAR\" }",
        );
    let shown = check_fails(&env_secret);
    assert!(
        shown.contains("routes[0].verify") && shown.contains("HOOKGATE_SURELY_UNSET_VAR"),
        "{shown}"
    );

    let misnamed = server_toml("")
        + &upstream_toml("alerts", "http://127.0.0.1:9/", "")
        + &pulse_route("[\"alert\"]");
    let shown = check_fails(&misnamed);
    assert!(
        shown.contains("routes[0].upstreams[0]: unknown upstream `alert`")
            && shown.contains("did you mean `alerts`?"),
        "{shown}"
    );

    let no_scheme =
        server_toml("") + &upstream_toml("u", "127.0.0.1:7001/x", "") + &pulse_route("[\"u\"]");
    let shown = check_fails(&no_scheme);
    assert!(
        shown.contains("upstreams.u.url") && shown.contains("absolute http:// or https:// URL"),
        "{shown}"
    );
}

#[test]
fn a_misspelled_table_is_named_itself_not_the_table_before_it() {
    let base = server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "");
    let shown = check_fails(&(base.clone() + "[stroe]\npath = \"x\"\n" + &pulse_route("[\"u\"]")));
    assert!(
        shown.contains(": stroe: unknown field `stroe`") && shown.contains("did you mean `store`?"),
        "{shown}"
    );
    let shown = check_fails(&(base + &pulse_route("[\"u\"]").replace("[[routes]]", "[[route]]")));
    assert!(
        shown.contains(": route[0]: unknown field `route`"),
        "{shown}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_key() {
    let upstream = upstream_toml("u", "http://127.0.0.1:9/", "");
    let route = pulse_route("[\"u\"]");
    for (toml, key) in [
        (
            server_toml("").replace("\"127.0.0.1:0\"", "8443") + &upstream + &route,
            "server.listen",
        ),
        (
            server_toml("max_body = 5") + &upstream + &route,
            "server.max_body",
        ),
        (
            server_toml("").replace("key = \"certs/gateway.key\"", "key = 5") + &upstream + &route,
            "server.tls.key",
        ),
        (
            server_toml("") + &upstream + &route.replace("name = \"pulse\"", "name = 5"),
            "routes[0].name",
        ),
        (
            server_toml("") + &upstream.replace("timeout = \"2s\"", "timeout = true") + &route,
            "upstreams.u.timeout",
        ),
    ] {
        let shown = check_fails(&toml);
        assert!(shown.contains(&format!(": {key}: ")), "{key}: {shown}");
    }
}

#[test]
fn a_duration_too_long_to_count_in_milliseconds_is_refused_with_the_limit() {
    let toml = server_toml("")
        + &upstream_toml("u", "http://127.0.0.1:9/", "")
        + &pulse_route("[\"u\"]").replace("window = \"72h\"", "window = \"200000000000d\"");
    let shown = check_fails(&toml);
    assert!(
        shown.contains("gateway.toml:")
            && shown.contains("routes[0].dedup.window")
            && shown.contains("36500d"),
        "{shown}"
    );
}

#[test]
fn settings_that_zero_would_make_useless_are_refused() {
    let upstream = upstream_toml("u", "http://127.0.0.1:9/", "");
    let route = pulse_route("[\"u\"]");
    for (toml, key) in [
        (
            server_toml("") + "[store]\nhigh_water = 0\n" + &upstream + &route,
            "store.high_water",
        ),
        (
            server_toml("max_connections = 0") + &upstream + &route,
            "server.max_connections",
        ),
        (
            server_toml("max_inflight_body = \"0\"") + &upstream + &route,
            "server.max_inflight_body",
        ),
        (
            server_toml("max_body = \"0KiB\"") + &upstream + &route,
            "server.max_body",
        ),
        (
            server_toml("header_timeout = \"0s\"") + &upstream + &route,
            "server.header_timeout",
        ),
        (
            server_toml("")
                + &upstream
                + &route.replace("limited_status", "max_body = \"0\"\nlimited_status"),
            "routes[0].max_body",
        ),
        (
            server_toml("") + &upstream.replace("max_attempts = 5", "max_attempts = 0") + &route,
            "upstreams.u.retry.max_attempts",
        ),
        (
            server_toml("") + &upstream.replace("timeout = \"2s\"", "concurrency = 0") + &route,
            "upstreams.u.concurrency",
        ),
        (
            server_toml("") + &upstream.replace("timeout = \"2s\"", "timeout = \"0ms\"") + &route,
            "upstreams.u.timeout",
        ),
        (
            server_toml("") + &upstream + "breaker = { failures = 0 }\n" + &route,
            "upstreams.u.breaker.failures",
        ),
        (
            server_toml("")
                + &upstream.replace("max_attempts = 5", "max_attempts = 5, max_age = \"0s\"")
                + &route,
            "upstreams.u.retry.max_age",
        ),
    ] {
        let shown = check_fails(&toml);
        assert!(
            shown.contains("gateway.toml:") && shown.contains(&format!(": {key}: must be ")),
            "{key}: {shown}"
        );
    }
}

#[test]
fn a_header_dedup_key_the_signature_does_not_cover_is_warned_about() {
    let base = server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "");
    let route = |verify: &str, key: &str| {
        format!(
            "[[routes]]\nname = \"r\"\npath = \"/r\"\nverify = {verify}\n\
             dedup = {{ key = \"header:{key}\" }}\nupstreams = [\"u\"]\n"
        )
    };
    let github = "{ scheme = \"github\", secrets = [{ file = \"pulse.token\" }] }";
    let site = Site::new(&(base.clone() + &route(github, "x-github-delivery")));
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("routes[0].dedup.key")
            && text(&out).contains("x-github-delivery")
            && text(&out).contains("accepted and delivered again"),
        "{}",
        text(&out)
    );

    let svix_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signed = format!("{{ scheme = \"standard-webhooks\", secrets = [\"{svix_secret}\"] }}");
    let site = Site::new(&(base + &route(&signed, "webhook-id")));
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("delivered again"), "{}", text(&out));
}

#[test]
fn an_inline_admin_token_is_warned_about() {
    let toml = server_toml("")
        + "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"inline-admin-token\"\n"
        + &upstream_toml("u", "http://127.0.0.1:9/", "")
        + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("admin.token: a secret is written inline"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("inline-admin-token"));
}

#[test]
fn secrets_that_cannot_be_right_refuse_to_start_with_what_to_fix() {
    let base = server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "");
    let route = |verify: &str| {
        format!("[[routes]]\nname = \"r\"\npath = \"/r\"\nverify = {verify}\nupstreams = [\"u\"]\n")
    };

    let shown = check_fails(
        &(base.clone() + &route("{ scheme = \"standard-webhooks\", secrets = [\"whsec_%%%\"] }")),
    );
    assert!(shown.contains("base64"), "{shown}");
    let shown = check_fails(
        &(base.clone()
            + &route("{ scheme = \"standard-webhooks\", secrets = [\"whsec_c2hvcnQ=\"] }")),
    );
    assert!(shown.contains("16"), "{shown}");
    let shown = check_fails(
        &(base.clone() + &route("{ scheme = \"standard-webhooks\", secrets = [\"v1,abc\"] }")),
    );
    assert!(shown.contains("v1,"), "{shown}");
    let shown = check_fails(&(base + &route("{ scheme = \"nonsense\", secrets = [\"x\"] }")));
    assert!(shown.contains("nonsense"), "{shown}");
}

#[test]
fn an_inline_secret_works_but_is_warned_about() {
    let toml = server_toml("")
        + &upstream_toml("u", "http://127.0.0.1:9/", "")
        + "[[routes]]\nname = \"r\"\npath = \"/r\"\nverify = { scheme = \"github\", secrets = [\"inline-secret\"] }\nupstreams = [\"u\"]\n";
    let site = Site::new(&toml);
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("inline"), "{}", text(&out));
    assert!(
        !text(&out).contains("inline-secret"),
        "the secret itself is never printed"
    );
}

#[tokio::test]
async fn send_says_what_to_do_when_the_gateway_certificate_is_marked_as_a_ca() {
    let site = Site::new(
        &(server_toml("")
            + &upstream_toml("u", "http://127.0.0.1:9/", "")
            + &pulse_route("[\"u\"]")),
    );
    // What a common one-line openssl recipe makes: a self-signed certificate for
    // localhost that is also a CA.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(site.cert_path().parent().unwrap()).unwrap();
    std::fs::write(site.cert_path(), cert.pem()).unwrap();
    std::fs::write(
        site.cert_path().with_file_name("gateway.key"),
        key.serialize_pem(),
    )
    .unwrap();
    let gateway = hookgate::gateway::Gateway::start(&site.config())
        .await
        .unwrap();

    let base = format!("https://localhost:{}", gateway.local_addr().port());
    let body = site.dir.path().join("body.json");
    std::fs::write(&body, br#"{"request_id":"r1"}"#).unwrap();
    let config = site.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        hookgate(
            &config,
            &[
                "send",
                "--route",
                "pulse",
                "--url",
                &base,
                body.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("marked as a CA") && text(&out).contains("CA:FALSE"),
        "{}",
        text(&out)
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn send_signs_for_each_scheme_and_the_gateway_accepts() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &pulse_route("[\"u\"]")
        + "[[routes]]\nname = \"gh\"\npath = \"/hooks/gh\"\nverify = { scheme = \"github\", secrets = [{ file = \"pulse.token\" }] }\nupstreams = [\"u\"]\n"
        + "[[routes]]\nname = \"sw\"\npath = \"/hooks/sw\"\nverify = { scheme = \"standard-webhooks\", secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }\nupstreams = [\"u\"]\n"
        + "[[routes]]\nname = \"st\"\npath = \"/hooks/st\"\nverify = { scheme = \"stripe\", secrets = [{ file = \"pulse.token\" }] }\nupstreams = [\"u\"]\n";
    let gw = Running::start(&toml).await;
    let base = format!("https://localhost:{}", gw.gateway.local_addr().port());
    let body_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pulse/success.json");
    let body_arg = body_path.to_str().unwrap();

    for route in ["pulse", "gh", "sw", "st"] {
        let config = gw.site.config_path.clone();
        let args = ["send", "--route", route, "--url", &base, body_arg].map(str::to_owned);
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            hookgate(&config, &args)
        })
        .await
        .unwrap();
        let shown = text(&out);
        assert!(out.status.success(), "{route}: {shown}");
        assert!(
            shown.starts_with("202") || shown.starts_with("200"),
            "{route}: {shown}"
        );
    }
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() >= 4).await);
    assert!(
        upstream
            .accepted()
            .iter()
            .all(|r| r.body == fixture("success.json"))
    );
}

#[tokio::test]
async fn callback_url_prints_a_url_the_gateway_accepts() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + "[[routes]]\nname = \"pulse\"\npath = \"/hooks/pulse\"\nverify = { scheme = \"signed-url\", secrets = [{ file = \"pulse.token\" }], match_extra = true }\nupstreams = [\"u\"]\n";
    let gw = Running::start(&toml).await;
    let base = format!("https://localhost:{}", gw.gateway.local_addr().port());
    let config = gw.site.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        hookgate(
            &config,
            &[
                "callback-url",
                "--route",
                "pulse",
                "--ttl",
                "1h",
                "--extra",
                "case_id:42,region:us-east",
                "--url",
                &base,
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let url = stdout.lines().next().unwrap();
    let encoded = stdout.lines().last().unwrap();
    assert!(encoded.starts_with("https%3A%2F%2F"), "{encoded}");

    let answer = gw
        .site
        .client()
        .post(url, &[], &fixture("success.json"))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let answer = gw
        .site
        .client()
        .post(url, &[], &fixture("failed.json"))
        .await;
    assert_eq!(answer.status, 401, "the bound case_id does not match");
}

/// `check` of `config` with the secrets the deploy configuration reads from its environment.
fn check_with_deploy_secrets(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "-c"])
        .arg(config)
        .env("PULSE_TOKEN", "a-token-from-the-environment")
        .env("HOOKGATE_ADMIN_TOKEN", "an-admin-token")
        .output()
        .unwrap()
}

#[test]
fn the_deploy_configuration_checks_with_its_secrets_in_the_environment() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.toml");
    // As shipped, its certificate is wherever the operator puts it; a check before it is
    // there says so, and what to do.
    let early = check_with_deploy_secrets(&shipped);
    assert!(!early.status.success(), "{}", text(&early));
    assert!(
        text(&early).contains("/etc/hookgate/certs/gateway.crt: missing")
            && text(&early).contains("create = true"),
        "{}",
        text(&early)
    );

    // With the pair in place, the same file checks.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    hookgate::ingress::tls::Tls::load(&hookgate::config::TlsFiles {
        cert: certs.join("gateway.crt"),
        key: certs.join("gateway.key"),
        client_ca: None,
        create: true,
    })
    .unwrap();
    let text_of_file = std::fs::read_to_string(&shipped).unwrap();
    assert!(text_of_file.contains("/etc/hookgate/certs/"));
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        text_of_file.replace("/etc/hookgate/certs", certs.to_str().unwrap()),
    )
    .unwrap();
    let out = check_with_deploy_secrets(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("route pulse POST /hooks/pulse"),
        "{}",
        text(&out)
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "-c"])
        .arg(&path)
        .env_remove("PULSE_TOKEN")
        .env("HOOKGATE_ADMIN_TOKEN", "an-admin-token")
        .output()
        .unwrap();
    assert!(text(&missing).contains("PULSE_TOKEN"), "{}", text(&missing));
}

#[test]
fn commands_need_only_the_secrets_they_use() {
    // The service gets its secrets from its own environment; an operator's shell has none.
    let stripe = "[[routes]]\nname = \"stripe\"\npath = \"/hooks/stripe\"\n\
        verify = { scheme = \"stripe\", secrets = [{ env = \"HOOKGATE_TEST_NEVER_SET\" }] }\n\
        upstreams = [\"u\"]\n";
    let toml = server_toml("")
        + &upstream_toml("u", "http://127.0.0.1:9/", "")
        + &pulse_route("[\"u\"]")
        + stripe;
    let site = Site::new(&toml);
    let body = site.dir.path().join("body.json");
    std::fs::write(&body, br#"{"request_id":"r1"}"#).unwrap();
    let body = body.to_str().unwrap();

    let signed = hookgate(&site.config_path, &["sign", "--route", "pulse", body]);
    assert!(signed.status.success(), "{}", text(&signed));
    assert!(
        text(&signed).contains(&format!("token={TOKEN}")),
        "{}",
        text(&signed)
    );

    let refused = hookgate(&site.config_path, &["sign", "--route", "stripe", body]);
    assert!(!refused.status.success());
    let shown = text(&refused);
    assert!(
        shown.contains("routes[1].verify") && shown.contains("HOOKGATE_TEST_NEVER_SET is not set"),
        "{shown}"
    );

    // The admin commands need the admin token alone.
    let with_admin = toml.clone() + "[admin]\nlisten = \"127.0.0.1:9\"\n";
    std::fs::write(&site.config_path, with_admin).unwrap();
    let list = hookgate(&site.config_path, &["deliveries", "list"]);
    assert!(
        !text(&list).contains("HOOKGATE_TEST_NEVER_SET"),
        "{}",
        text(&list)
    );
    assert!(text(&list).contains("127.0.0.1:9"), "{}", text(&list));
    let tokened =
        toml + "[admin]\nlisten = \"127.0.0.1:9\"\ntoken = { env = \"HOOKGATE_TEST_NO_TOKEN\" }\n";
    std::fs::write(&site.config_path, tokened).unwrap();
    let list = hookgate(&site.config_path, &["deliveries", "list"]);
    assert!(!list.status.success());
    assert!(
        text(&list).contains("admin.token: environment variable HOOKGATE_TEST_NO_TOKEN is not set"),
        "{}",
        text(&list)
    );
}

#[test]
fn an_event_id_given_to_retry_is_answered_with_where_delivery_ids_are() {
    let site = Site::new(&(server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "")));
    let event = "01a23fdd-64ad-72ee-b9e5-e6d1814b31b9";
    let out = hookgate(&site.config_path, &["deliveries", "retry", event]);
    assert!(!out.status.success());
    let shown = text(&out);
    assert!(shown.contains("is not a delivery id"), "{shown}");
    assert!(
        shown.contains(&format!("hookgate deliveries show {event}")),
        "{shown}"
    );

    let out = hookgate(
        &site.config_path,
        &["deliveries", "list", "--state", "bogus"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pending, delivered, dead, paused, all"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_loads_the_certificate_and_key_as_a_start_would() {
    let site = Site::new(&(server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "")));
    // Neither file: a start would create a development pair; check only says so.
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("a start creates a self-signed development pair"));
    assert!(!site.cert_path().exists());

    let files = site.config().server.tls.unwrap();
    hookgate::ingress::tls::Tls::load(&files).unwrap();
    let out = hookgate(&site.config_path, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("development pair"), "{}", text(&out));

    std::fs::write(&files.key, "garbage\n").unwrap();
    let out = hookgate(&site.config_path, &["check"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("gateway.key: no PEM private key"),
        "{}",
        text(&out)
    );

    std::fs::remove_file(&files.key).unwrap();
    let out = hookgate(&site.config_path, &["check"]);
    assert!(!out.status.success());
    let shown = text(&out);
    assert!(
        shown.contains("gateway.key: missing, while")
            && shown.contains("gateway.crt is there")
            && shown.contains("`create` makes a pair only when neither file exists"),
        "{shown}"
    );
}

#[test]
fn without_create_a_missing_certificate_stops_a_start_and_nothing_is_made() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n\
        tls = { cert = \"certs/gateway.crt\", key = \"certs/gateway.key\" }\n"
        .to_owned()
        + &upstream_toml("u", "http://127.0.0.1:9/", "")
        + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    for command in ["check", "run"] {
        let out = ended_within(&site.config_path, command, Duration::from_secs(30));
        assert!(!out.status.success(), "{command}: {}", text(&out));
        let shown = text(&out);
        assert!(
            shown.contains("certs/gateway.crt: missing, and so is")
                && shown.contains("certs/gateway.key")
                && shown.contains("`create = true`"),
            "{command}: {shown}"
        );
        assert!(!site.cert_path().exists(), "{command} made a certificate");
        assert!(!site.db_path().exists(), "{command} made a store");
    }
}

/// Runs `command`, killing it if it has not ended by `limit` (a start that should have
/// failed would otherwise serve until the test run is stopped).
fn ended_within(config: &Path, command: &str, limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("-c")
        .arg(config)
        .arg(command)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn sign_prints_only_its_result_on_standard_output() {
    // The shipped file creates the Pulse token on first use, and says so in a log line;
    // that line goes to standard error, not into what a script reads.
    let (dir, path) = shipped_configuration();
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"request_id":"r1"}"#).unwrap();
    let out = hookgate(&path, &["sign", "--route", "pulse", body.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let token = std::fs::read_to_string(dir.path().join("certs/pulse.token")).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("url: https://") && first.ends_with(&format!("token={}", token.trim())),
        "{stdout}"
    );
    assert!(!stdout.contains("development secret"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("created a development secret"), "{stderr}");
}

#[test]
fn sign_gives_a_route_keyed_on_a_header_a_fresh_value_for_it() {
    let github = "[[routes]]\nname = \"github\"\npath = \"/hooks/github\"\n\
        verify = { scheme = \"github\", secrets = [\"s\"] }\n\
        dedup = { key = \"header:x-github-delivery\" }\nupstreams = [\"u\"]\n";
    let site =
        Site::new(&(server_toml("") + &upstream_toml("u", "http://127.0.0.1:9/", "") + github));
    let body = site.dir.path().join("body.json");
    std::fs::write(&body, b"{}").unwrap();
    let delivery = |out: &Output| {
        let shown = text(out);
        let line = shown.lines().find(|l| l.starts_with("x-github-delivery: "));
        line.unwrap_or_else(|| panic!("{shown}")).to_owned()
    };
    let first = hookgate(
        &site.config_path,
        &["sign", "--route", "github", body.to_str().unwrap()],
    );
    let second = hookgate(
        &site.config_path,
        &["sign", "--route", "github", body.to_str().unwrap()],
    );
    assert!(
        text(&first).contains("x-hub-signature-256: sha256="),
        "{}",
        text(&first)
    );
    assert_ne!(delivery(&first), delivery(&second));
}

#[tokio::test]
async fn send_adds_the_headers_it_is_given() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let forward = "forward_headers = [\"X-GitHub-Event\"]";
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), forward)
        + "[[routes]]\nname = \"gh\"\npath = \"/hooks/gh\"\nverify = { scheme = \"github\", secrets = [\"s\"] }\n\
           dedup = { key = \"header:x-github-delivery\" }\nupstreams = [\"u\"]\n";
    let gw = Running::start(&toml).await;
    let base = format!("https://localhost:{}", gw.gateway.local_addr().port());
    let plain = fixture("success.json");
    let packed = gzip(&plain);
    let packed_path = gw.site.dir.path().join("success.json.gz");
    std::fs::write(&packed_path, &packed).unwrap();

    let config = gw.site.config_path.clone();
    let body = packed_path.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let args = [
            "send",
            "--route",
            "gh",
            "--url",
            &base,
            "-H",
            "X-GitHub-Event: push",
            "--header",
            "Content-Encoding: gzip",
            &body,
        ];
        hookgate(&config, &args)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("202"), "{}", text(&out));

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
    let received = &upstream.accepted()[0];
    assert_eq!(received.header("x-github-event"), "push");
    assert_eq!(
        received.body, plain,
        "signed over the gzip bytes, forwarded inflated"
    );

    let bad = hookgate(
        &gw.site.config_path,
        &["send", "--route", "gh", "-H", "no colon", "x"],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("write a header as NAME: VALUE"),
        "{}",
        text(&bad)
    );
}
