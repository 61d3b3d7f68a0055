//! Model-name patterns: `*` matches any run of characters (including none), `?` one
//! character; everything else matches itself. `gpt-4o*` matches `gpt-4o` and
//! `gpt-4o-mini`; `*` matches every model.

/// A compiled model pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Matches every name.
    Any,
    /// Matches exactly this name.
    Exact(String),
    /// Matches names starting with this prefix (pattern `prefix*`).
    Prefix(String),
    /// Any other pattern with wildcards.
    Glob(Vec<u8>),
}

impl Pattern {
    /// Compiles `pattern`, picking the cheapest matcher that is exact for it.
    pub fn new(pattern: &str) -> Self {
        let wild = |c: char| c == '*' || c == '?';
        if pattern == "*" {
            Pattern::Any
        } else if !pattern.contains(wild) {
            Pattern::Exact(pattern.to_string())
        } else if let Some(p) = pattern.strip_suffix('*').filter(|p| !p.contains(wild)) {
            Pattern::Prefix(p.to_string())
        } else {
            Pattern::Glob(pattern.as_bytes().to_vec())
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => s == name,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Glob(p) => glob_match(p, name.as_bytes()),
        }
    }

    /// Whether this pattern names exactly one model (no wildcards).
    pub fn is_exact(&self) -> bool {
        matches!(self, Pattern::Exact(_))
    }
}

/// Iterative wildcard match with single-star backtracking: linear in practice, no
/// recursion, no allocation.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(Pattern::new("*"), Pattern::Any);
        assert_eq!(Pattern::new("a"), Pattern::Exact("a".into()));
        assert_eq!(Pattern::new("gpt-4o*"), Pattern::Prefix("gpt-4o".into()));
        assert!(matches!(Pattern::new("*-mini"), Pattern::Glob(_)));
    }

    #[test]
    fn matching() {
        assert!(Pattern::new("gpt-4o*").matches("gpt-4o"));
        assert!(Pattern::new("gpt-4o*").matches("gpt-4o-mini"));
        assert!(!Pattern::new("gpt-4o*").matches("gpt-4"));
        assert!(Pattern::new("*-mini").matches("gpt-4o-mini"));
        assert!(!Pattern::new("*-mini").matches("gpt-4o-mini-x"));
        assert!(Pattern::new("claude-?-*").matches("claude-3-opus"));
        assert!(!Pattern::new("claude-?-*").matches("claude-35-opus"));
        assert!(Pattern::new("a*b*c").matches("aXXbYYbc"));
        assert!(!Pattern::new("a*b*c").matches("aXXbYYbcd"));
        assert!(Pattern::new("exact").matches("exact"));
        assert!(!Pattern::new("exact").matches("exact2"));
    }
}
