//! The way to the upstream: the next candidate's peer and body, the request header it
//! gets (path, Host, its credential; never the client's credentials, cookies or query
//! string), and what its response header starts.

use std::time::Instant;

use arrayvec::ArrayVec;
use http::header::{self, HeaderName, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::usage::UsageChunkStripper;

use super::ctx::Ctx;
use super::failure::Failure;
use super::translate::{self, Plan, Relay};
use super::{Gateway, X_API_KEY, X_ROUTE};
use crate::config::IpNet;
use crate::providers::presets::Wire;
use crate::state::Snapshot;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Client headers that are never forwarded: gateway credentials, the routing hint,
/// `Expect` (the body was already read), `Accept-Encoding` (so token usage can be read
/// from the response), cookies, and proxy credentials. `X-Forwarded-For` is set by the
/// gateway itself.
static STRIPPED: [&HeaderName; 7] = [
    &header::AUTHORIZATION,
    &X_API_KEY,
    &X_ROUTE,
    &header::EXPECT,
    &header::ACCEPT_ENCODING,
    &header::COOKIE,
    &header::PROXY_AUTHORIZATION,
];

/// The query string passed to an upstream: only the parameters in `allow`, in their
/// order; `None` when none is left.
fn forwarded_query(query: &str, allow: &[String]) -> Option<String> {
    if allow.is_empty() {
        return None;
    }
    let mut out = String::new();
    for pair in query.split('&') {
        let name = pair.split('=').next().unwrap_or(pair);
        if allow.iter().any(|a| a == name) {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Writes `ip` in its usual text form; IPv4 without the formatting machinery (this runs
/// for every proxied request).
fn write_ip(out: &mut arrayvec::ArrayString<48>, ip: std::net::IpAddr) {
    use std::fmt::Write as _;
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(n.format(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `X-Forwarded-For` for the upstream: the client's address, appended to what the client
/// sent only when the client is a trusted proxy.
fn forwarded_for(
    client: Option<std::net::IpAddr>,
    sent: Option<&HeaderValue>,
    trusted: &[IpNet],
) -> Option<HeaderValue> {
    let ip = client?;
    let mut v = arrayvec::ArrayString::<48>::new();
    write_ip(&mut v, ip);
    match sent.filter(|_| trusted.iter().any(|n| n.contains(ip))) {
        Some(prev) if !prev.is_empty() => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + v.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(v.as_bytes());
            HeaderValue::from_bytes(&joined).ok()
        }
        _ => HeaderValue::from_str(&v).ok(),
    }
}

impl Gateway {
    /// Counts the request in flight on candidate `i` (leaving the previous one).
    pub(super) fn enter_provider(ctx: &mut Ctx, snap: &Snapshot, i: u16) {
        if let Some(c) = ctx.route.inflight.take() {
            c.leave();
        }
        let p = &snap.providers[i as usize];
        p.counters.enter();
        ctx.route.inflight = Some(p.counters.clone());
        ctx.route.current = Some(i);
    }

    /// The next candidate that can take the request: its peer, with the body it gets.
    /// Skips candidates whose host does not resolve or whose daily quota is used up.
    pub(super) async fn next_peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(snap) = ctx.snap.clone() else {
            return Err(Error::explain(ErrorType::InternalError, "no snapshot"));
        };
        if std::mem::take(&mut ctx.route.same_again) {
            ctx.route.next = ctx.route.next.saturating_sub(1);
        }
        while ctx.route.next < ctx.route.candidates.len() {
            let i = ctx.route.candidates[ctx.route.next];
            ctx.route.next += 1;
            let p = &snap.providers[i as usize];
            let Some(up) = &p.upstream else { continue };
            let Some(peer) = &up.peer else {
                let _ = ctx.route.failures.try_push((i, Failure::HostUnresolved));
                continue;
            };
            if self.hub.tenancy.has_quota(&p.name) {
                match self.hub.tenancy.take_quota(&p.name).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.hub
                            .metrics
                            .quota_exhausted
                            .with_label_values(&[p.name.as_str()])
                            .inc();
                        ctx.route.quota_failures += 1;
                        let _ = ctx.route.failures.try_push((i, Failure::QuotaExhausted));
                        continue;
                    }
                    Err(_) => {
                        let _ = ctx.route.failures.try_push((i, Failure::QuotaUnavailable));
                        continue;
                    }
                }
            }
            ctx.req.inject_usage = ctx.req.stream
                && p.inject_usage
                && !ctx.req.client_wants_usage
                && up.wire == Wire::OpenAi;
            let (relay, endpoint, body) = match translate::plan(ctx, p, up) {
                Plan::Go {
                    relay,
                    endpoint,
                    body,
                } => {
                    if matches!(relay, Relay::Pass) {
                        ctx.req.anthropic = None;
                    }
                    (relay, endpoint, body)
                }
                Plan::Skip => {
                    let _ = ctx.route.failures.try_push((i, Failure::Unsupported));
                    continue;
                }
                Plan::Refuse(e) => {
                    ctx.route.refused = Some(e);
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(400),
                        "the request cannot be translated for this provider",
                    ));
                }
            };
            if let Some(prev) = ctx.route.current.filter(|&c| c != i) {
                snap.providers[prev as usize].counters.fallbacks.inc();
            }
            if let Some(reason) = ctx.route.pending_resend.take() {
                self.hub.metrics.resends.with_label_values(&[reason]).inc();
            }
            if !matches!(relay, Relay::Pass) {
                self.hub
                    .metrics
                    .translations
                    .with_label_values(&[relay.label()])
                    .inc();
            }
            Self::enter_provider(ctx, &snap, i);
            ctx.route.attempts = ctx.route.attempts.saturating_add(1);
            ctx.req.relay = relay;
            ctx.req.upstream_endpoint = Some(endpoint);
            ctx.req.send_body = body;
            ctx.time.upstream_header = None;
            ctx.tap.strip = None;
            ctx.tap.transcoder = None;
            ctx.tap.collect = None;
            return Ok(Box::new(peer.clone()));
        }
        Err(Error::explain(
            ErrorType::HTTPStatus(503),
            "no candidate left",
        ))
    }

    /// The request header the current candidate gets.
    pub(super) fn prepare_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let (Some(snap), Some(i), Some(ep)) =
            (&ctx.snap, ctx.route.current, ctx.req.upstream_endpoint)
        else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no provider chosen",
            ));
        };
        let Some(up) = &snap.providers[i as usize].upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "provider has no upstream",
            ));
        };
        let target = &up.targets[ep];
        // The client's query string is dropped (it can carry credentials) but for the
        // parameters the provider is configured to receive.
        let query = req
            .uri
            .query()
            .and_then(|q| forwarded_query(q, &up.forward_query));
        if let Some(q) = query {
            let uri: http::Uri = format!("{}?{}", target.uri.path(), q)
                .parse()
                .map_err(|_| Error::explain(ErrorType::InternalError, "bad upstream uri"))?;
            req.set_uri(uri);
        } else if req.uri.query().is_some()
            || !(target.standard && req.uri.path() == target.uri.path())
        {
            req.set_uri(target.uri.clone());
        }
        req.insert_parsed_header(&header::HOST, "Host", up.host.clone());
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let xff = forwarded_for(
            client_ip,
            req.headers.get(&X_FORWARDED_FOR),
            &self.hub.settings.server.trusted_proxies,
        );
        match xff {
            Some(v) => req.insert_parsed_header(&X_FORWARDED_FOR, "X-Forwarded-For", v),
            None => {
                req.remove_header(&X_FORWARDED_FOR);
            }
        }
        // One pass over the (few) request headers instead of a lookup per name.
        let mut strip: ArrayVec<&'static HeaderName, 7> = ArrayVec::new();
        for name in req.headers.keys() {
            if let Some(h) = STRIPPED.iter().find(|h| **h == name) {
                if !strip.contains(h) {
                    strip.push(h);
                }
            }
        }
        for h in strip {
            req.remove_header(h);
        }
        if let Some((name, case, value)) = &up.auth {
            req.insert_parsed_header(name, case, value.clone());
        }
        for (k, v) in &up.extra_headers {
            req.insert_header(k.clone(), v.clone())?;
        }
        if ep.is_anthropic() || up.wire == Wire::Anthropic {
            translate::anthropic_headers(req, ctx, up);
        }
        let len = ctx.req.send_body.len();
        let declared_ok = req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == itoa::Buffer::new().format(len).as_bytes());
        if !declared_ok {
            req.remove_header(&header::TRANSFER_ENCODING);
            req.insert_parsed_header(
                &header::CONTENT_LENGTH,
                "Content-Length",
                HeaderValue::from(len),
            );
        }
        ctx.time.upstream_sent = Some(Instant::now());
        Ok(())
    }

    /// The upstream's response header for the answer the client gets: records the
    /// status, arms the usage tap, and starts the flight followers wait on.
    pub(super) fn on_response_header(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) {
        let status = resp.status.as_u16();
        ctx.outcome.status = status;
        translate::on_header(resp, ctx);
        let ok = (200..300).contains(&status);
        ctx.tap.scan = ok && ctx.endpoint.is_some_and(Endpoint::is_inference);
        if let Some(f) = &ctx.cache.flight {
            let sse = resp
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            f.start(status, sse);
            if status != 200 {
                f.finish(false);
            }
        }
        if ok && ctx.req.stream && ctx.req.inject_usage && matches!(ctx.req.relay, Relay::Pass) {
            ctx.tap.strip = Some(UsageChunkStripper::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_keep_only_allowed_parameters() {
        let allow = vec!["api-version".to_string()];
        assert_eq!(forwarded_query("api_key=sk&x=1", &[]), None);
        assert_eq!(forwarded_query("api_key=sk&x=1", &allow), None);
        assert_eq!(
            forwarded_query("api_key=sk&api-version=2024-10-21&x", &allow).as_deref(),
            Some("api-version=2024-10-21")
        );
        assert_eq!(
            forwarded_query("api-version", &allow).as_deref(),
            Some("api-version")
        );
    }

    #[test]
    fn forwarded_for_is_the_gateways_unless_the_client_is_trusted() {
        let client: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let sent = HeaderValue::from_static("6.6.6.6");
        let trusted = vec![IpNet::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            forwarded_for(Some(client), Some(&sent), &[]).unwrap(),
            "10.1.2.3"
        );
        assert_eq!(
            forwarded_for(Some(client), Some(&sent), &trusted).unwrap(),
            "6.6.6.6, 10.1.2.3"
        );
        assert_eq!(
            forwarded_for(Some(client), None, &trusted).unwrap(),
            "10.1.2.3"
        );
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_for(Some(v6), None, &[]).unwrap(), "2001:db8::1");
        assert!(forwarded_for(None, Some(&sent), &trusted).is_none());
        let mut s = arrayvec::ArrayString::<48>::new();
        write_ip(&mut s, "255.0.10.1".parse().unwrap());
        assert_eq!(s.as_str(), "255.0.10.1");
    }
}
