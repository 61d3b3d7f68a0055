//! TLS on the proxy listener, and TLS with SNI and certificate verification to an
//! upstream: a gateway serving HTTPS sits in front of mock-llm, and a second gateway
//! reaches it as an `https://` provider, trusting a private CA through `ca_file`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

/// A private CA and a server certificate it signed for `localhost` / 127.0.0.1 (needs
/// the `openssl` CLI). Returns (ca cert, server cert, server key).
fn private_ca(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Switchyard Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

#[tokio::test]
async fn tls_listener_and_verified_tls_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = private_ca(dir.path());
    let mock = Mock::start(&["--model", "m"]);
    let front = Gateway::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[local]\nkind = \"vllm\"\nurl = \"{}\"\n",
        cert.display(),
        key.display(),
        mock.url()
    ))
    .await;
    assert_eq!(front.scheme, "https");
    let port = front.proxy.rsplit(':').next().unwrap().to_string();

    // A client that trusts the CA talks HTTPS to the gateway.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/v1/chat/completions");
    let r = wait_for(
        "the TLS listener",
        std::time::Duration::from_secs(20),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .post(&url)
                    .json(&chat("m", false))
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200).then_some(r)
            }
        },
    )
    .await;
    assert!(r.text().await.unwrap().contains("chat.completion"));

    // A second gateway reaches the first as an https provider, by name (SNI), and
    // verifies its certificate against ca_file.
    let provider = format!(
        "[[providers]]\nname = \"secure\"\nkind = \"openai-compatible\"\nbase_url = \"https://localhost:{port}/v1\"\napi_key = \"sk-x\"\nmodels = [\"m\"]\n"
    );
    let back = Gateway::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nca_file = \"{}\"\n\n[routing]\nstrategy = \"cloud-only\"\nauto_detect = false\n{provider}",
        ca_pem.display()
    ))
    .await;
    let (s, h, t) = post(&back.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "secure");

    // Without the CA the certificate is refused: no answer from an unverified peer.
    let untrusting = Gateway::start(&format!(
        "[routing]\nstrategy = \"cloud-only\"\nauto_detect = false\n{provider}"
    ))
    .await;
    let (s, _, t) = post(&untrusting.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 503, "{t}");
    assert!(
        error_of(&t)["message"]
            .as_str()
            .unwrap()
            .contains("secure failed"),
        "{t}"
    );
}
