//! The recent log in memory: a `tracing` layer that keeps the last [`CAPACITY`] events as text
//! lines, for the web UI's "recent logs" page. The log never holds secrets (the code logs none),
//! so neither does this ring.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept.
pub const CAPACITY: usize = 2000;
/// The longest line kept (longer ones are cut, with "…").
pub const MAX_LINE: usize = 2048;

/// One event as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unix seconds.
    pub time: i64,
    /// "ERROR", "WARN", "INFO", "DEBUG" or "TRACE".
    pub level: &'static str,
    /// The message, then the fields as ` key=value`.
    pub text: String,
}

/// A bounded buffer of recent lines, oldest first.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<Line>>,
}

impl LogRing {
    /// Adds a line, dropping the oldest beyond [`CAPACITY`].
    pub fn push(&self, line: Line) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= CAPACITY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `limit` lines, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Line> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = lines.len().saturating_sub(limit);
        lines.iter().skip(skip).cloned().collect()
    }
}

/// The process's ring, which [`RingLayer`] fills.
pub fn global() -> &'static LogRing {
    static RING: OnceLock<LogRing> = OnceLock::new();
    RING.get_or_init(LogRing::default)
}

/// The layer that copies every event (that passes the subscriber's filter) into [`global`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RingLayer;

struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if value.contains([' ', '"', '=']) || value.is_empty() {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut text);
        let mut line = text.message;
        line.push_str(&text.fields);
        truncate(&mut line, MAX_LINE);
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        global().push(Line {
            time,
            level: event.metadata().level().as_str(),
            text: line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_newest_lines_in_order() {
        let ring = LogRing::default();
        for i in 0..CAPACITY + 5 {
            ring.push(Line {
                time: i as i64,
                level: "INFO",
                text: format!("line {i}"),
            });
        }
        let last = ring.recent(3);
        let texts: Vec<_> = last.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                format!("line {}", CAPACITY + 2),
                format!("line {}", CAPACITY + 3),
                format!("line {}", CAPACITY + 4)
            ]
        );
        assert_eq!(ring.recent(usize::MAX).len(), CAPACITY);
        assert_eq!(ring.recent(usize::MAX)[0].text, "line 5");
    }

    #[test]
    fn events_become_message_and_fields() {
        let subscriber = tracing_subscriber::registry().with(RingLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                remote = "203.0.113.5:500",
                reason = "no proposal chosen",
                n = 3,
                "ringtest refused"
            );
        });
        let line = global()
            .recent(usize::MAX)
            .into_iter()
            .rfind(|l| l.text.starts_with("ringtest"))
            .expect("the event is in the ring");
        assert_eq!(line.level, "WARN");
        assert_eq!(
            line.text,
            "ringtest refused remote=203.0.113.5:500 reason=\"no proposal chosen\" n=3"
        );
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut s = "é".repeat(MAX_LINE);
        truncate(&mut s, MAX_LINE);
        assert!(s.len() <= MAX_LINE);
        assert!(s.ends_with('…'));
        let mut short = "short".to_string();
        truncate(&mut short, MAX_LINE);
        assert_eq!(short, "short");
    }
}
