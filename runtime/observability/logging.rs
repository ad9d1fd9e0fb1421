//! The `tracing` subscriber of `ferrolite serve`: text or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`), and, in a binary built with the `otlp` feature, spans exported
//! to an OpenTelemetry collector over OTLP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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

/// `name=value` fields, space-separated, the message bare: the default text layout, unstyled.
/// Text values are written as they are (a request's span has four, formatted when it opens).
fn plain_fields() -> PlainFields {
    PlainFields
}

struct PlainFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = PlainVisitor { writer, result: Ok(()), first: true };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    result: std::fmt::Result,
    first: bool,
}

impl PlainVisitor<'_> {
    /// Writes the separator and `name=` (nothing for the message); false once a write failed.
    fn start(&mut self, field: &tracing::field::Field) -> bool {
        if self.result.is_ok() && !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        if self.result.is_ok() && field.name() != "message" {
            self.result = self.writer.write_str(field.name()).and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }
}

impl tracing::field::Visit for PlainVisitor<'_> {
    // Text is copied as it is: no formatting machinery for the span's four strings.
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if self.start(field) {
            self.result = std::fmt::Write::write_str(&mut self.writer, value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.writer, "{value:?}");
        }
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
