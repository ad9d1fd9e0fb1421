//! The `tracing` subscriber of `ferrolite serve`: text or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`), and, in a binary built with the `otlp` feature, spans exported
//! to an OpenTelemetry collector over OTLP.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, with the current span's fields (request id, workspace, ...).
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "--otlp-endpoint: this ferrolite was built without the `otlp` feature; rebuild with `cargo build --release --features otlp`"
    )]
    OtlpNotBuilt,
    #[error("--otlp-endpoint {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
}

/// Keeps the OTLP exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops the OTLP export"]
pub struct Guard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the process-wide subscriber (a second call keeps the first one).
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Guard, LoggingError> {
    let filter = Filter::from_directives(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref()).layer();
    // Colour codes only for a terminal: in a log file they are noise, and formatting them
    // showed up in profiles of the request path.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        // Every request's span has its fields formatted when it opens; the default formatter
        // styles each name through nu_ansi_term even with colours off.
        LogFormat::Text if !ansi => fmt.fmt_fields(plain_fields()).boxed(),
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    match otlp_endpoint {
        None => {
            let _ = registry.try_init();
            Ok(Guard {
                #[cfg(feature = "otlp")]
                provider: None,
            })
        }
        #[cfg(not(feature = "otlp"))]
        Some(_) => Err(LoggingError::OtlpNotBuilt),
        #[cfg(feature = "otlp")]
        Some(endpoint) => {
            let (layer, provider) = otlp::layer(endpoint)?;
            let _ = registry.with(layer).try_init();
            Ok(Guard { provider: Some(provider) })
        }
    }
}

/// The filter `RUST_LOG` asks for (`info` when unset or unreadable). Targets and levels alone,
/// what nearly every setting says, make a static filter: `EnvFilter`, which span and field
/// directives need, takes a process-wide lock each time any span is entered or left (some
/// fifteen atomic operations a request on one cache line, from every lane).
#[derive(Debug)]
// Made once, at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Filter {
    Static(Targets),
    Spans(EnvFilter),
}

impl Filter {
    fn from_directives(directives: Option<&str>) -> Filter {
        let Some(text) = directives else { return Filter::Static(Targets::new().with_default(tracing::Level::INFO)) };
        // A blank setting is left to EnvFilter, which gives it a meaning of its own.
        if !text.trim().is_empty() {
            if let Ok(targets) = text.parse::<Targets>() {
                return Filter::Static(targets);
            }
        }
        Filter::Spans(EnvFilter::try_new(text).unwrap_or_else(|_| EnvFilter::new("info")))
    }

    fn layer(self) -> Box<dyn Layer<Registry> + Send + Sync> {
        match self {
            Filter::Static(targets) => targets.boxed(),
            Filter::Spans(filter) => filter.boxed(),
        }
    }
}

/// `name=value` fields, space-separated, the message bare: the default text layout, unstyled.
/// Text values are written as they are (a request's span has four, formatted when it opens).
fn plain_fields() -> PlainFields {
    PlainFields
}

struct PlainFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        // The fields are gathered on the stack and written in one piece: the writer behind
        // `Writer` is a growing String reached through `dyn Write`, and a write per separator,
        // name and value grew it (and copied it) a dozen times for each request's span.
        let mut visitor = PlainVisitor { line: Line::default(), first: true };
        fields.record(&mut visitor);
        match &visitor.line.spilled {
            Some(text) => writer.write_str(text),
            None => writer.write_str(visitor.line.as_str()),
        }
    }
}

/// Text of up to [`Line::INLINE`] bytes kept on the stack, in a String past that.
struct Line {
    bytes: [u8; Line::INLINE],
    len: usize,
    spilled: Option<String>,
}

impl Line {
    const INLINE: usize = 256;

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// One ASCII byte (a separator), written in place rather than copied as a slice.
    #[inline]
    fn push_byte(&mut self, byte: u8) {
        debug_assert!(byte.is_ascii());
        match (&mut self.spilled, self.bytes.get_mut(self.len)) {
            (None, Some(slot)) => {
                *slot = byte;
                self.len += 1;
            }
            _ => self.push(char::from(byte).encode_utf8(&mut [0; 4])),
        }
    }

    #[inline]
    fn push(&mut self, text: &str) {
        if let Some(spilled) = &mut self.spilled {
            spilled.push_str(text);
            return;
        }
        match self.bytes.get_mut(self.len..self.len + text.len()) {
            Some(room) => {
                room.copy_from_slice(text.as_bytes());
                self.len += text.len();
            }
            None => {
                let mut spilled = String::with_capacity(self.len + text.len() + 64);
                spilled.push_str(self.as_str());
                spilled.push_str(text);
                self.spilled = Some(spilled);
            }
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Line { bytes: [0; Line::INLINE], len: 0, spilled: None }
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.push(text);
        Ok(())
    }
}

struct PlainVisitor {
    line: Line,
    first: bool,
}

impl PlainVisitor {
    /// Writes the separator and `name=` (nothing for the message).
    fn start(&mut self, field: &tracing::field::Field) {
        if !std::mem::take(&mut self.first) {
            self.line.push_byte(b' ');
        }
        if field.name() != "message" {
            self.line.push(field.name());
            self.line.push_byte(b'=');
        }
    }
}

impl tracing::field::Visit for PlainVisitor {
    // Text is copied as it is: no formatting machinery for the span's four strings.
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.start(field);
        self.line.push(value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.start(field);
        let _ = std::fmt::Write::write_fmt(&mut self.line, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod line_tests {
    use super::Line;
    use std::fmt::Write;

    #[test]
    fn a_line_stays_on_the_stack_until_it_outgrows_it_and_keeps_every_byte() {
        let mut line = Line::default();
        line.push("id=req_1 op=chat_completions ");
        assert!(line.spilled.is_none());
        assert_eq!(line.as_str(), "id=req_1 op=chat_completions ");
        let long = "é".repeat(200);
        let _ = write!(line, "x={long}");
        let text = line.spilled.as_deref().expect("spilled");
        assert_eq!(text, format!("id=req_1 op=chat_completions x={long}"));
    }

    #[test]
    fn a_byte_fills_the_last_inline_place_then_follows_the_spilled_text() {
        let mut line = Line::default();
        line.push(&"a".repeat(Line::INLINE - 1));
        line.push_byte(b'=');
        assert!(line.spilled.is_none());
        assert_eq!(line.as_str().len(), Line::INLINE);
        assert!(line.as_str().ends_with("a="));
        line.push_byte(b' ');
        line.push("b");
        let text = line.spilled.as_deref().expect("spilled");
        assert_eq!(text, format!("{}= b", "a".repeat(Line::INLINE - 1)));
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use super::LoggingError;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A layer sending spans to `endpoint` (OTLP over HTTP, e.g. `http://collector:4318/v1/traces`).
    pub fn layer<S>(
        endpoint: &str,
    ) -> Result<
        (tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>, SdkTracerProvider),
        LoggingError,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| LoggingError::Otlp { endpoint: endpoint.to_owned(), reason: e.to_string() })?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("ferrolite").build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let tracer = provider.tracer("ferrolite");
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn spans_are_posted_to_the_otlp_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = vec![0u8; 64 * 1024];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned();
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                let _ = tx.send(head);
            }
        });
        let (layer, provider) = super::otlp::layer(&endpoint).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let span = tracing::info_span!("request", id = "req_0123456789abcdef");
            let _entered = span.enter();
        });
        let _ = provider.force_flush();
        let head = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(head, "POST /v1/traces HTTP/1.1");
    }
}

#[cfg(test)]
mod plain_tests {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_and_event_fields_are_written_plain() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(super::plain_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = "req_1", op = "chat_completions", n = 3);
            let _entered = span.enter();
            tracing::info!(status = 200, path = "/v1/x", "served {}", "fine");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("request{id=req_1 op=chat_completions n=3}:"), "{text}");
        assert!(text.contains("served fine status=200 path=/v1/x"), "{text}");
    }
}

#[cfg(test)]
mod filter_tests {
    use super::Filter;
    use tracing_subscriber::layer::SubscriberExt;

    fn passes(directives: Option<&str>, level: tracing::Level, in_span: bool) -> bool {
        passes_through(Filter::from_directives(directives), level, in_span)
    }

    fn passes_through(filter: Filter, level: tracing::Level, in_span: bool) -> bool {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let subscriber = tracing_subscriber::registry().with(filter.layer()).with(Seen(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = "req_1");
            let _entered = in_span.then(|| span.enter());
            match level {
                tracing::Level::DEBUG => tracing::debug!(target: "ferrolite::router", "x"),
                tracing::Level::INFO => tracing::info!(target: "ferrolite::router", "x"),
                _ => tracing::warn!(target: "hyper::proto", "x"),
            }
        });
        seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    struct Seen(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn targets_and_levels_make_a_static_filter_that_filters_as_env_filter_does() {
        assert!(matches!(Filter::from_directives(None), Filter::Static(_)));
        assert!(matches!(Filter::from_directives(Some("ferrolite=debug,warn")), Filter::Static(_)));
        assert!(passes(None, tracing::Level::INFO, false));
        assert!(!passes(None, tracing::Level::DEBUG, false));
        assert!(passes(Some("ferrolite=debug,error"), tracing::Level::DEBUG, false));
        assert!(!passes(Some("ferrolite=debug,error"), tracing::Level::WARN, false), "hyper's warning is under error");
        assert!(!passes(Some("off"), tracing::Level::WARN, false));
        // Whatever the static filter takes, it decides as EnvFilter would.
        for directives in
            ["info", "ferrolite=debug", "ferrolite=debug,warn", "hyper=warn", "ferrolite::router=info", "off", "trace"]
        {
            assert!(matches!(Filter::from_directives(Some(directives)), Filter::Static(_)), "{directives}");
            for level in [tracing::Level::DEBUG, tracing::Level::INFO, tracing::Level::WARN] {
                let env = super::EnvFilter::try_new(directives).unwrap();
                assert_eq!(
                    passes(Some(directives), level, false),
                    passes_through(Filter::Spans(env), level, false),
                    "{directives} at {level}"
                );
            }
        }
    }

    #[test]
    fn span_directives_and_unreadable_settings_go_to_env_filter() {
        let spans = Some("warn,[request{id=req_1}]=debug");
        assert!(matches!(Filter::from_directives(spans), Filter::Spans(_)));
        assert!(passes(spans, tracing::Level::DEBUG, true), "inside the span the debug event passes");
        assert!(!passes(spans, tracing::Level::DEBUG, false));
        assert!(matches!(Filter::from_directives(Some("=!=")), Filter::Spans(_)));
        assert!(passes(Some("=!="), tracing::Level::INFO, false), "an unreadable setting means info");
        assert!(!passes(Some("=!="), tracing::Level::DEBUG, false));
    }
}
