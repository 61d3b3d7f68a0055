//! The routing decision: from a model name, the strategy, a per-request hint and the
//! providers' availability to an ordered list of candidates.
//!
//! Resolution order for a requested name:
//! 1. `[routing.aliases]` rewrite it (exact match, one step).
//! 2. A name the local backend serves (discovered, or matching `[local] models`) is local.
//! 3. Otherwise `provider/model` names a provider explicitly; the prefix is stripped.
//! 4. Every provider whose `models` patterns match the name is a candidate.
//!
//! The strategy (adjusted by the hint) then orders and filters the candidates:
//! `local-first` (local and in-process providers, then cloud, in config order),
//! `cloud-first`, `local-only`, `cloud-only`. In-process providers (the built-in mock)
//! never leave the machine and are allowed by every strategy.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use arrayvec::ArrayVec;

use crate::glob::Pattern;

/// Most candidates a request can have; more matching providers are ignored.
pub const MAX_CANDIDATES: usize = 8;

/// How requests are spread between the local backend and the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Local backend first, cloud as fallback.
    #[default]
    LocalFirst,
    /// Cloud first, local as fallback.
    CloudFirst,
    /// Never leave the machine.
    LocalOnly,
    /// Never use the local backend.
    CloudOnly,
}

impl Strategy {
    /// Parses `local-first` | `cloud-first` | `local-only` | `cloud-only`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local-first" => Self::LocalFirst,
            "cloud-first" => Self::CloudFirst,
            "local-only" => Self::LocalOnly,
            "cloud-only" => Self::CloudOnly,
            _ => return None,
        })
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalFirst => "local-first",
            Self::CloudFirst => "cloud-first",
            Self::LocalOnly => "local-only",
            Self::CloudOnly => "cloud-only",
        }
    }

    /// The strategy for one request given its `X-Switchyard-Route` hint. `local` and
    /// `secure` never leave the machine; `online` and `fast` prefer the cloud but never
    /// override a `local-only` deployment.
    pub fn with_hint(self, hint: Hint) -> Self {
        match hint {
            Hint::None => self,
            Hint::Local | Hint::Secure => Self::LocalOnly,
            Hint::Online | Hint::Fast => match self {
                Self::LocalOnly => Self::LocalOnly,
                Self::CloudOnly => Self::CloudOnly,
                _ => Self::CloudFirst,
            },
        }
    }
}

/// The per-request routing hint (`X-Switchyard-Route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hint {
    /// No hint.
    #[default]
    None,
    /// Keep the request on the machine.
    Local,
    /// Same as `Local`: the data must not leave the machine.
    Secure,
    /// Prefer cloud providers.
    Online,
    /// Prefer cloud providers (lowest latency is usually there).
    Fast,
}

impl Hint {
    /// Parses a header value (case-insensitive); unknown values are `None`.
    pub fn parse(v: &[u8]) -> Self {
        if v.eq_ignore_ascii_case(b"local") {
            Self::Local
        } else if v.eq_ignore_ascii_case(b"secure") {
            Self::Secure
        } else if v.eq_ignore_ascii_case(b"online") {
            Self::Online
        } else if v.eq_ignore_ascii_case(b"fast") {
            Self::Fast
        } else {
            Self::None
        }
    }
}

/// Where a provider runs, which is what strategies decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The active local inference backend.
    Local,
    /// A cloud API.
    Cloud,
    /// Answered inside the gateway process (the built-in mock).
    InProcess,
}

/// One provider as routing sees it.
#[derive(Debug, Clone)]
pub struct RouteProvider {
    /// Unique name (`local` for the local backend); the `provider/` prefix.
    pub name: String,
    /// Local, cloud or in-process.
    pub class: Class,
    /// Model patterns this provider serves.
    pub patterns: Vec<Pattern>,
}

/// The hasher of the routing sets: every request looks its model up in them, and their
/// keys come from configuration and the local backend, never from clients, so a
/// seeded fast hash is enough (no client can fill them with colliding names).
pub type NameHasher = foldhash::fast::RandomState;

/// Everything routing reads, built once per config snapshot.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Providers in configuration order (the local backend first when configured).
    pub providers: Vec<RouteProvider>,
    /// Alias -> real model name.
    pub aliases: HashMap<String, String, NameHasher>,
    /// Models the local backend reported (exact names).
    pub local_models: HashSet<String, NameHasher>,
    /// Index of the local backend in `providers`, if one is configured.
    pub local: Option<usize>,
    /// The deployment's strategy.
    pub strategy: Strategy,
}

/// Why a candidate was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The strategy (after the hint) excludes this provider's class.
    Strategy(Strategy),
    /// The provider cannot take requests now (local backend not ready, quota used up).
    Unavailable(&'static str),
}

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'a> {
    /// The model name after alias resolution (and, for `provider/model`, the full name).
    pub resolved: Cow<'a, str>,
    /// Byte offset into `resolved` where the upstream model name starts (after a
    /// `provider/` prefix), or 0.
    pub upstream_offset: usize,
    /// Providers to try, in order.
    pub candidates: ArrayVec<u16, MAX_CANDIDATES>,
    /// Providers that serve the model but were left out, and why.
    pub skipped: ArrayVec<(u16, Skip), MAX_CANDIDATES>,
}

impl Route<'_> {
    /// The model name to send upstream.
    pub fn upstream_model(&self) -> &str {
        &self.resolved[self.upstream_offset..]
    }
}

/// A routing failure.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// Nobody serves this model.
    NotFound,
}

impl RouteTable {
    /// Decides where `model` goes. `unavailable(i)` says why provider `i` cannot take
    /// requests right now (or `None` when it can). A route with no candidates means the
    /// model is known but nothing can serve it now; `skipped` says why.
    pub fn decide<'a>(
        &'a self,
        model: &'a str,
        hint: Hint,
        unavailable: impl Fn(usize) -> Option<&'static str>,
    ) -> Result<Route<'a>, RouteError> {
        let resolved: &'a str = self.aliases.get(model).map_or(model, String::as_str);
        let strategy = self.strategy.with_hint(hint);
        let mut serving: ArrayVec<u16, MAX_CANDIDATES> = ArrayVec::new();
        let mut upstream_offset = 0;

        let local_serves = |name: &str| {
            self.local.is_some_and(|li| {
                self.local_models.contains(name)
                    || self.providers[li].patterns.iter().any(|p| p.matches(name))
            })
        };

        if let (Some(li), true) = (self.local, self.local_models.contains(resolved)) {
            serving.push(li as u16);
            self.push_matching(resolved, Some(li), &mut serving);
        } else if let Some((i, off)) = self.explicit(resolved) {
            serving.push(i as u16);
            upstream_offset = off;
        } else {
            if let (Some(li), true) = (self.local, local_serves(resolved)) {
                serving.push(li as u16);
            }
            self.push_matching(resolved, self.local, &mut serving);
        }
        if serving.is_empty() {
            return Err(RouteError::NotFound);
        }

        let mut route = Route {
            resolved: Cow::Borrowed(resolved),
            upstream_offset,
            candidates: ArrayVec::new(),
            skipped: ArrayVec::new(),
        };
        let near_first = !matches!(strategy, Strategy::CloudFirst | Strategy::CloudOnly);
        for pass in 0..2 {
            for &i in &serving {
                let class = self.providers[i as usize].class;
                let near = class != Class::Cloud;
                if (pass == 0) != (near == near_first) {
                    continue;
                }
                let allowed = match (strategy, class) {
                    (_, Class::InProcess) => true,
                    (Strategy::LocalOnly, Class::Cloud) => false,
                    (Strategy::CloudOnly, Class::Local) => false,
                    _ => true,
                };
                if !allowed {
                    let _ = route.skipped.try_push((i, Skip::Strategy(strategy)));
                } else if let Some(why) = unavailable(i as usize) {
                    let _ = route.skipped.try_push((i, Skip::Unavailable(why)));
                } else {
                    let _ = route.candidates.try_push(i);
                }
            }
        }
        Ok(route)
    }

    /// `provider/model` with a configured provider name: (provider index, offset).
    fn explicit(&self, name: &str) -> Option<(usize, usize)> {
        let (prefix, rest) = name.split_once('/')?;
        if rest.is_empty() {
            return None;
        }
        let i = self.providers.iter().position(|p| p.name == prefix)?;
        Some((i, prefix.len() + 1))
    }

    fn push_matching(
        &self,
        name: &str,
        except: Option<usize>,
        out: &mut ArrayVec<u16, MAX_CANDIDATES>,
    ) {
        for (i, p) in self.providers.iter().enumerate() {
            if Some(i) == except || out.is_full() {
                continue;
            }
            if p.patterns.iter().any(|pat| pat.matches(name)) {
                out.push(i as u16);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(strategy: Strategy) -> RouteTable {
        let p = |name: &str, class, pats: &[&str]| RouteProvider {
            name: name.into(),
            class,
            patterns: pats.iter().map(|s| Pattern::new(s)).collect(),
        };
        RouteTable {
            providers: vec![
                p("local", Class::Local, &[]),
                p("mock", Class::InProcess, &["mock"]),
                p("openai", Class::Cloud, &["gpt-*", "shared-model"]),
                p("groq", Class::Cloud, &["llama-*", "shared-model"]),
            ],
            aliases: [("fast".to_string(), "groq/llama-3.1-8b".to_string())]
                .into_iter()
                .collect(),
            local_models: ["shared-model".to_string(), "qwen".to_string()]
                .into_iter()
                .collect(),
            local: Some(0),
            strategy,
        }
    }

    fn cands(t: &RouteTable, m: &str, h: Hint) -> Vec<u16> {
        t.decide(m, h, |_| None).unwrap().candidates.to_vec()
    }

    #[test]
    fn local_first_orders_local_then_cloud() {
        let t = table(Strategy::LocalFirst);
        assert_eq!(cands(&t, "shared-model", Hint::None), vec![0, 2, 3]);
        assert_eq!(cands(&t, "qwen", Hint::None), vec![0]);
        assert_eq!(cands(&t, "gpt-4o", Hint::None), vec![2]);
    }

    #[test]
    fn cloud_first_orders_cloud_then_local() {
        let t = table(Strategy::CloudFirst);
        assert_eq!(cands(&t, "shared-model", Hint::None), vec![2, 3, 0]);
    }

    #[test]
    fn only_strategies_filter() {
        let t = table(Strategy::LocalOnly);
        let r = t.decide("shared-model", Hint::None, |_| None).unwrap();
        assert_eq!(r.candidates.to_vec(), vec![0]);
        assert_eq!(r.skipped.len(), 2);
        let r = t.decide("gpt-4o", Hint::None, |_| None).unwrap();
        assert!(r.candidates.is_empty());
        assert_eq!(r.skipped[0], (2, Skip::Strategy(Strategy::LocalOnly)));
        let t = table(Strategy::CloudOnly);
        assert_eq!(cands(&t, "shared-model", Hint::None), vec![2, 3]);
        assert!(cands(&t, "qwen", Hint::None).is_empty());
    }

    #[test]
    fn in_process_allowed_everywhere() {
        for s in [Strategy::LocalOnly, Strategy::CloudOnly] {
            assert_eq!(cands(&table(s), "mock", Hint::None), vec![1]);
        }
    }

    #[test]
    fn hints() {
        let t = table(Strategy::LocalFirst);
        assert_eq!(cands(&t, "shared-model", Hint::Fast), vec![2, 3, 0]);
        assert_eq!(cands(&t, "shared-model", Hint::Secure), vec![0]);
        let t = table(Strategy::LocalOnly);
        assert_eq!(cands(&t, "shared-model", Hint::Online), vec![0]);
        assert_eq!(Hint::parse(b"LOCAL"), Hint::Local);
        assert_eq!(Hint::parse(b"bogus"), Hint::None);
    }

    #[test]
    fn explicit_provider_and_alias() {
        let t = table(Strategy::LocalFirst);
        let r = t
            .decide("openai/gpt-4o-mini", Hint::None, |_| None)
            .unwrap();
        assert_eq!(r.candidates.to_vec(), vec![2]);
        assert_eq!(r.upstream_model(), "gpt-4o-mini");
        let r = t.decide("fast", Hint::None, |_| None).unwrap();
        assert_eq!(r.candidates.to_vec(), vec![3]);
        assert_eq!(r.upstream_model(), "llama-3.1-8b");
        // a slash that is not a provider is part of the model name
        assert_eq!(
            t.decide("meta/llama", Hint::None, |_| None),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn unavailable_is_skipped_with_reason() {
        let t = table(Strategy::LocalFirst);
        let r = t
            .decide("shared-model", Hint::None, |i| {
                (i == 0).then_some("draining")
            })
            .unwrap();
        assert_eq!(r.candidates.to_vec(), vec![2, 3]);
        assert_eq!(r.skipped.to_vec(), vec![(0, Skip::Unavailable("draining"))]);
    }

    #[test]
    fn unknown_model() {
        let t = table(Strategy::LocalFirst);
        assert_eq!(
            t.decide("nope", Hint::None, |_| None),
            Err(RouteError::NotFound)
        );
    }
}
