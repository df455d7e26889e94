//! Secret masking in step output, also when a secret is split across writes.
//!
//! Values of project and context variables (4 characters or longer, and not
//! `true`/`false`) become `********`. The masker holds back the last
//! `longest secret - 1` bytes of each chunk until the next chunk shows whether
//! they start a secret.

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &[u8] = b"********";

/// How a secret's value is shown in the listing of variables: never any part
/// of it.
pub fn masked_value(value: &str) -> String {
    if is_maskable(value) {
        String::from_utf8_lossy(MASK).into_owned()
    } else {
        value.to_string()
    }
}

pub struct Masker {
    matcher: Option<AhoCorasick>,
    longest: usize,
    held: Vec<u8>,
}

/// Whether a variable's value is masked.
pub fn is_maskable(value: &str) -> bool {
    value.len() >= 4 && !matches!(value, "true" | "True" | "false" | "False")
}

impl Masker {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut secrets: Vec<&str> = secrets.into_iter().filter(|s| is_maskable(s)).collect();
        secrets.sort();
        secrets.dedup();
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
        let matcher = (!secrets.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&secrets)
                .expect("literal patterns always build")
        });
        Masker {
            matcher,
            longest,
            held: Vec::new(),
        }
    }

    /// Masks a chunk; returns what can be shown now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(matcher) = &self.matcher else {
            return chunk.to_vec();
        };
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        // Bytes from `safe` on may be the start of a secret that continues in
        // the next chunk.
        let safe = buf.len().saturating_sub(self.longest - 1);
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        for m in matcher.find_iter(&buf) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&buf[pos..m.start()]);
            out.extend_from_slice(MASK);
            pos = m.end();
        }
        let keep_from = pos.max(safe);
        out.extend_from_slice(&buf[pos..keep_from]);
        self.held = buf[keep_from..].to_vec();
        out
    }

    /// Everything still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let Some(matcher) = &self.matcher else {
            return std::mem::take(&mut self.held);
        };
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        for m in matcher.find_iter(&buf) {
            out.extend_from_slice(&buf[pos..m.start()]);
            out.extend_from_slice(MASK);
            pos = m.end();
        }
        out.extend_from_slice(&buf[pos..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], chunks: &[&str]) -> String {
        let mut m = Masker::new(secrets.iter().copied());
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.feed(c.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_whole_and_split_secrets() {
        assert_eq!(run(&["hunter22"], &["pw=hunter22 ok"]), "pw=******** ok");
        assert_eq!(
            run(&["hunter22"], &["pw=hun", "ter", "22 ok"]),
            "pw=******** ok"
        );
        assert_eq!(
            run(&["hunter22"], &["h", "u", "n", "t", "e", "r", "2", "2"]),
            "********"
        );
        assert_eq!(
            run(&["abcd", "abcdef"], &["xabcdefx abcdx"]),
            "x********x ********x"
        );
    }

    #[test]
    fn short_and_boolean_values_are_not_secrets() {
        assert_eq!(
            run(&["abc", "true", "False"], &["abc true False"]),
            "abc true False"
        );
        assert_eq!(run(&[], &["plain"]), "plain");
    }

    #[test]
    fn nothing_is_lost_across_chunks() {
        let text = "a".repeat(1000) + "SECRETVALUE" + &"b".repeat(1000);
        let chunks: Vec<String> = text
            .as_bytes()
            .chunks(7)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let out = run(&["SECRETVALUE"], &refs);
        assert_eq!(out, "a".repeat(1000) + "********" + &"b".repeat(1000));
    }
}
