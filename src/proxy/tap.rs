//! The response body on its way to the client: chunks pass through untouched (the
//! `Bytes` are not copied) unless the usage-only event must go; the usage is found at
//! the end, the first and last chunk are timed, and a flight's followers get every
//! chunk.

use std::time::Instant;

use bytes::Bytes;
use switchyard_filters::usage::{usage_from_tail, Usage};

use super::ctx::Ctx;
use super::translate;

/// Taps one body chunk (`None` with `end_of_stream`: the end of the body).
pub(super) fn on_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) {
    if translate::on_body(body, end_of_stream, ctx) {
        // Translated for the client: its usage comes from the translator, and the
        // flight's followers get what the client got.
        if let Some(b) = body.as_ref().filter(|b| !b.is_empty()) {
            if ctx.time.first_chunk.is_none() {
                ctx.time.first_chunk = Some(Instant::now());
            }
            if let Some(f) = &ctx.cache.flight {
                f.push(b);
            }
        }
        if end_of_stream {
            ctx.time.last_chunk = Some(Instant::now());
            ctx.tap.complete = true;
        }
        return;
    }
    let tap = &mut ctx.tap;
    if let Some(b) = body.as_ref() {
        if ctx.time.first_chunk.is_none() && !b.is_empty() {
            ctx.time.first_chunk = Some(Instant::now());
            // A native Anthropic stream reports its input side only in `message_start`,
            // at the start; the end of the stream has the output side.
            if tap.scan && ctx.req.stream && ctx.endpoint.is_some_and(|e| e.is_anthropic()) {
                tap.head_usage = usage_from_tail(b);
            }
        }
        if let (Some(f), false) = (&ctx.cache.flight, b.is_empty()) {
            f.push(b);
        }
        match tap.strip.as_mut() {
            // The stripper reads usage from the event it removes.
            Some(st) if !st.passes(b) => {
                let chunk = body.take().unwrap_or_default();
                let out = st.filter(chunk, end_of_stream);
                *body = (!out.is_empty() || end_of_stream).then_some(out);
            }
            Some(_) => {}
            // Otherwise usage is read at the end from the last chunks (an OpenAI-shaped
            // response or stream puts it last), so chunks are not scanned as they pass.
            None if tap.scan && !b.is_empty() => {
                tap.tail.rotate_left(1);
                tap.tail[2] = Some(b.clone());
            }
            None => {}
        }
    } else if let (true, Some(st)) = (end_of_stream, tap.strip.as_mut()) {
        let out = st.filter(Bytes::new(), true);
        *body = (!out.is_empty()).then_some(out);
    }
    if end_of_stream {
        ctx.time.last_chunk = Some(Instant::now());
        tap.complete = true;
    }
}

/// The usage of the response, once it ended.
pub(super) fn usage(ctx: &Ctx) -> Option<Usage> {
    let tail = match &ctx.tap.strip {
        Some(st) => st.usage(),
        None => usage_of_tail(&ctx.tap.tail),
    };
    match (ctx.tap.head_usage, tail) {
        (Some(head), Some(end)) => {
            let prompt = end.prompt_tokens.max(head.prompt_tokens);
            let completion = end.completion_tokens.max(head.completion_tokens);
            Some(Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            })
        }
        (head, end) => end.or(head),
    }
}

/// Usage from the end of a response or stream: the last chunk, or the last chunks joined
/// when the usage object straddles them (a stream's `[DONE]` often arrives alone).
fn usage_of_tail(tail: &[Option<Bytes>; 3]) -> Option<Usage> {
    let last = tail[2].as_ref()?;
    if let Some(u) = usage_from_tail(last) {
        return Some(u);
    }
    let mut joined: Vec<u8> = Vec::new();
    for prev in tail[..2].iter().rev().flatten() {
        let keep = prev.len().min(8192);
        let mut next = Vec::with_capacity(keep + joined.len().max(last.len()));
        next.extend_from_slice(&prev[prev.len() - keep..]);
        next.extend_from_slice(if joined.is_empty() { last } else { &joined });
        if let Some(u) = usage_from_tail(&next) {
            return Some(u);
        }
        joined = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_straddling_the_last_chunks_is_found() {
        let u = br#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let (a, b) = u.split_at(40);
        let tail = [
            Some(Bytes::copy_from_slice(a)),
            Some(Bytes::copy_from_slice(b)),
            Some(Bytes::from_static(b"\n\ndata: [DONE]\n\n")),
        ];
        assert_eq!(usage_of_tail(&tail).map(|u| u.total_tokens), Some(7));
        assert_eq!(usage_of_tail(&[None, None, None]), None);
    }
}
