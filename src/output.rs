//! What a finished command left: how it ended and its output, kept up to a cap. Shared by
//! local children ([`crate::remote`]) and SSH channels ([`crate::ssh`]); imports nothing of
//! ours.

use std::time::Duration;

/// How much of each output stream is kept; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    /// The program could not be started at all (or SSH refused: host key, login).
    NotStarted(String),
    /// The host did not answer (SSH connect or handshake failed or timed out).
    Unreachable(String),
}

#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl Output {
    /// A one-line description of how the program ended, for reports.
    pub fn describe_exit(&self) -> String {
        match &self.exit {
            Exit::Code(c) => format!("exit {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut => format!(
                "timed out after {:.1}s and was killed",
                self.duration.as_secs_f64()
            ),
            Exit::NotStarted(e) => format!("could not start: {e}"),
            Exit::Unreachable(e) => format!("unreachable: {e}"),
        }
    }

    /// stdout and stderr together, for history.
    pub fn combined(&self) -> String {
        match (self.stdout.is_empty(), self.stderr.is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => format!(
                "{}\n--- stderr ---\n{}",
                self.stdout.trim_end(),
                self.stderr
            ),
        }
    }
}

/// A command's output kept up to [`OUTPUT_CAP`], counting what was dropped: the one buffer
/// behind local and remote output capture.
#[derive(Debug, Default)]
pub struct Capped {
    kept: Vec<u8>,
    dropped: usize,
}

impl Capped {
    pub fn push(&mut self, bytes: &[u8]) {
        let room = OUTPUT_CAP.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.dropped += bytes.len().saturating_sub(room);
    }

    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes not kept]", self.dropped));
        }
        text
    }
}
