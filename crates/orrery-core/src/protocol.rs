//! The runner protocol's messages: what a runner is given when it claims a
//! task, what it reports while running it, and what the server answers.
//!
//! The same types travel in-process (the embedded runner) and as JSON over
//! HTTP (`orrery runner` on another host).

use indexmap::IndexMap;
use orrery_config::Job;
use serde::{Deserialize, Serialize};

use crate::status::{JobStatus, StepOutcome};

/// Where a task's code comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSpec {
    pub url: String,
    pub revision: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
}

/// A claimed task: everything a runner needs to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: String,
    pub job_id: String,
    pub job_name: String,
    pub job_number: Option<i64>,
    pub job: Job,
    pub node_index: u32,
    pub node_total: u32,
    pub attempt: i64,
    pub project_slug: String,
    pub workflow_id: String,
    pub workspace_id: String,
    pub builtin_env: IndexMap<String, String>,
    pub project_env: Vec<(String, String)>,
    pub context_env: Vec<(String, String)>,
    pub checkout: CheckoutSpec,
    /// Upstream jobs whose workspace layers `attach_workspace` applies, in order.
    pub workspace_upstream: Vec<String>,
    pub max_run_time_secs: u64,
    /// How often the runner must send a heartbeat to keep the task.
    pub heartbeat_secs: u64,
}

/// Something a runner reports about a running task. Output chunks carry a
/// sequence number per step, so a resent chunk is stored once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerEvent {
    StepStarted {
        index: u32,
        name: String,
        background: bool,
        at: i64,
    },
    Output {
        index: u32,
        seq: u64,
        /// Base64 on the wire (see [`crate::protocol::b64`]).
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    StepFinished {
        index: u32,
        outcome: StepOutcome,
        at: i64,
    },
}

/// The server's answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The task was canceled: stop it.
    pub cancel: bool,
    /// The runner no longer holds the task (its lease ran out): stop it and
    /// do not report a result.
    pub lost: bool,
}

/// A task's final report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub status: JobStatus,
}

/// Base64 for byte fields in JSON.
pub mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let value = |c: u8| ALPHABET.iter().position(|a| *a == c).map(|p| p as u32);
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for chunk in bytes.chunks(4) {
            let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
            if pad > 2 {
                return None;
            }
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                let v = if i >= 4 - pad { 0 } else { value(*c)? };
                n |= v << (18 - 6 * i);
            }
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&decoded[..3 - pad]);
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips() {
            for data in [&b""[..], b"f", b"fo", b"foo", b"foobar", &[0, 255, 128, 7]] {
                assert_eq!(super::decode(&super::encode(data)).unwrap(), data);
            }
            assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
            assert!(super::decode("abc").is_none());
            assert!(super::decode("a===").is_none());
            assert!(super::decode("ab!=").is_none());
        }
    }
}
