//! The text log line for a file or a pipe: the same line as
//! `tracing_subscriber`'s default format without colours, written for a
//! fraction of its cost.
//!
//! Torpor logs two lines per client connection (logged in, closed), so at
//! thousands of logins a second the log is on every login's path. The
//! default format spent about 11 000 instructions per line (callgrind, 88 000
//! per login in all): the date worked out from the epoch on every line, and
//! every field name and `=` sent through a colour wrapper and `core::fmt`
//! even with colours off. Here the date is worked out once a second per
//! thread, and names, separators and plain strings are copied as they are.
//!
//! What a line holds is unchanged (tests and log collectors read it):
//! `2026-12-05T23:52:06.176719Z  INFO torpor::session: logged in id=7
//! peer=127.0.0.1:56574 user=app`. One thing is stricter than the
//! default: control characters in a message or a value (a user name is
//! the client's to choose) are written escaped, so no line can end early
//! or forge another, nor drive a terminal that shows the log.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format: time, level, spans, target, fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainLine;

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own target and level, not the bridge's.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The level as the default format shows it, right-aligned in five.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

thread_local! {
    /// This thread's last second and its text up to the fraction
    /// (`2026-12-05T23:52:06.`): a date is worked out once a second.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `now` as RFC 3339 in UTC with microseconds, as the default
/// format does (`2026-12-05T23:52:06.176719Z`).
fn write_timestamp(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        return writer.write_str("<unknown time>");
    };
    let seconds = since_epoch.as_secs();
    SECOND.with(|cell| {
        let mut second = cell.borrow_mut();
        if second.0 != seconds {
            let whole = UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            // "2026-12-05T23:52:06Z" without its "Z", and the point.
            second.1.clear();
            second.1.push_str(text.trim_end_matches('Z'));
            second.1.push('.');
            second.0 = seconds;
        }
        writer.write_str(&second.1)
    })?;
    let mut micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Six ASCII digits.
    writer.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)?;
    writer.write_char('Z')
}

/// The field format: the message, then `name=value` for each field,
/// separated by spaces; strings quoted, other values as they display.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes the fields of one event (or span) as [`PlainFields`] says.
struct PlainVisitor<'writer> {
    writer: Writer<'writer>,
    empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Starts a field: the space before it (none before the first), and
    /// its name and `=` unless it is the message.
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !self.empty {
            self.writer.write_char(' ')?;
        }
        self.empty = false;
        match field.name() {
            "message" => Ok(()),
            name => {
                self.writer
                    .write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.writer.write_char('=')
            }
        }
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Self) -> fmt::Result) {
        // A `log` record's metadata, shown already as the line's target.
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.start(field).and_then(|()| value(self));
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |this| {
            if field.name() == "message" {
                Escaped(&mut this.writer).write_str(value)
            } else {
                // Debug quotes the string and escapes what is in it.
                write!(this.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |this| {
            this.writer.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |this| {
            this.writer.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |this| {
            this.writer.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |this| {
            write!(Escaped(&mut this.writer), "{value}")?;
            let Some(mut source) = value.source() else {
                return Ok(());
            };
            // As the default format: the chain of causes after the error.
            write!(this.writer, " {}.sources=[", field.name())?;
            loop {
                write!(Escaped(&mut this.writer), "{source}")?;
                match source.source() {
                    Some(next) => {
                        this.writer.write_str(", ")?;
                        source = next;
                    }
                    None => break,
                }
            }
            this.writer.write_char(']')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |this| write!(Escaped(&mut this.writer), "{value:?}"));
    }
}

/// A writer that escapes control characters (C0 but tab, DEL, C1) as
/// `\x1b` or `\u{85}`: a message or value never breaks its line.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Almost every string is clean: copied whole.
        if !text.chars().any(needs_escape) {
            return self.0.write_str(text);
        }
        for ch in text.chars() {
            if needs_escape(ch) {
                match u32::from(ch) {
                    code @ 0..=0x7f => write!(self.0, "\\x{code:02x}")?,
                    code => write!(self.0, "\\u{{{code:x}}}")?,
                }
            } else {
                self.0.write_char(ch)?;
            }
        }
        Ok(())
    }
}

/// Whether `ch` is written escaped: it could end a line or drive a
/// terminal.
fn needs_escape(ch: char) -> bool {
    (ch.is_control() && ch != '\t') || ch == '\u{7f}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::captured::Captured;

    #[derive(Debug)]
    struct Failure(Option<Box<Failure>>, &'static str);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.as_deref().map(|e| e as _)
        }
    }

    /// Every kind of field Torpor's lines carry, a span, and format args.
    fn log_a_bit_of_everything() {
        let peer: std::net::SocketAddr = "127.0.0.1:56574".parse().unwrap();
        tracing::info!(id = 7u64, peer = %peer, user = %"app", service = "default", "logged in");
        tracing::warn!(delta = -3i64, ok = true, r#type = "x", list = ?vec![1, 2], "a \"quoted\" word");
        let cause = Failure(Some(Box::new(Failure(None, "refused"))), "unreachable");
        tracing::error!(error = &cause as &dyn std::error::Error, "backend");
        let alone = Failure(None, "alone");
        tracing::error!(error = &alone as &dyn std::error::Error);
        let span = tracing::info_span!("outer", service = "default");
        let _entered = span.enter();
        tracing::debug!(n = 1u64, "inside {} of {}", 1, "span");
        tracing::trace!("no fields");
        // A crate that logs through `log`, as the bridge hands it on.
        let _ = tracing_log::format_trace(
            &tracing_log::log::Record::builder()
                .target("tiny_http")
                .module_path(Some("tiny_http::server"))
                .file(Some("server.rs"))
                .line(Some(7))
                .level(tracing_log::log::Level::Warn)
                .args(format_args!("from log {}", 42))
                .build(),
        );
    }

    fn lines_from(make: impl FnOnce(Captured) -> tracing::Dispatch) -> Vec<String> {
        let captured = Captured::default();
        tracing::dispatcher::with_default(&make(captured.clone()), log_a_bit_of_everything);
        captured.text().lines().map(str::to_owned).collect()
    }

    #[test]
    fn lines_read_as_the_default_formats_without_colours() {
        let default = lines_from(|captured| {
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(Level::TRACE)
                .with_writer(move || captured.clone())
                .finish()
                .into()
        });
        let plain = lines_from(|captured| {
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(Level::TRACE)
                .with_writer(move || captured.clone())
                .event_format(PlainLine)
                .fmt_fields(PlainFields)
                .finish()
                .into()
        });
        assert_eq!(default.len(), 7, "{default:#?}");
        assert_eq!(plain.len(), default.len(), "{plain:#?}");
        for (ours, theirs) in plain.iter().zip(&default) {
            // The times differ by when each was taken; their shape does not.
            let (our_time, our_rest) = ours.split_at(27);
            let (their_time, their_rest) = theirs.split_at(27);
            assert_eq!(our_rest, their_rest);
            let shape = |time: &str| time.replace(|c: char| c.is_ascii_digit(), "0");
            assert_eq!(shape(our_time), shape(their_time), "{ours}\n{theirs}");
        }
    }

    #[test]
    fn timestamps_read_as_the_default_formats_do() {
        let mut text = String::new();
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_796_514_726_176_719);
        write_timestamp(&mut text, at).unwrap();
        assert_eq!(text, "2026-12-05T23:52:06.176719Z");
        // The same second again (the cached date), and the next one.
        text.clear();
        write_timestamp(&mut text, at + std::time::Duration::from_micros(3)).unwrap();
        assert_eq!(text, "2026-12-05T23:52:06.176722Z");
        text.clear();
        write_timestamp(&mut text, at + std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(text, "2026-12-05T23:52:07.176719Z");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_copied() {
        let mut text = String::new();
        Escaped(&mut text)
            .write_str("app\n2026 ERROR forged\x1b[31m\u{85}\ttab é")
            .unwrap();
        assert_eq!(text, "app\\x0a2026 ERROR forged\\x1b[31m\\u{85}\ttab é");
    }
}
