//! The Prometheus text exposition (format 0.0.4) of a [`MetricsView`].
//!
//! Every family has one `# HELP` and one `# TYPE` line before its samples; counters end in
//! `_total`; label values escape `\`, `"` and line feeds; histograms list cumulative `_bucket`
//! samples with `le` ending in `+Inf`, then `_sum` and `_count`.

use std::fmt::Write;

use crate::backend::{Histogram, MetricsView};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `# HELP` text with `\` and line feeds escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers as they are, floats in Go's spelling of the special values.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], &value.to_string());
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut last = 0;
        for &(le, count) in &h.buckets {
            // Cumulative by contract; a backend slip must not produce a decreasing series.
            last = last.max(count).min(h.count);
            let le = float(le);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, &last.to_string());
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, &h.count.to_string());
        self.sample(&format!("{name}_sum"), labels, &float(h.sum_secs));
        self.sample(&format!("{name}_count"), labels, &h.count.to_string());
    }
}

/// The exposition text for `m`; `version` goes into `roadgate_build_info`.
pub fn render(m: &MetricsView, version: &str) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "roadgate_build_info",
        "gauge",
        "Always 1; the label carries the server's version.",
    );
    w.sample("roadgate_build_info", &[("version", version)], "1");
    w.single(
        "roadgate_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        m.uptime_secs,
    );
    w.single(
        "roadgate_sessions",
        "gauge",
        "VPN sessions with PPP up.",
        m.sessions_up,
    );
    w.single(
        "roadgate_ike_sas",
        "gauge",
        "IKE (phase 1) security associations.",
        m.ike_sas,
    );
    w.single(
        "roadgate_pool_addresses_used",
        "gauge",
        "Addresses of the pool in use.",
        m.pool_used,
    );
    w.single(
        "roadgate_pool_addresses",
        "gauge",
        "Addresses in the pool.",
        m.pool_size,
    );
    w.single(
        "roadgate_connects_total",
        "counter",
        "Sessions that came up since the server started.",
        m.connects_total,
    );
    w.family(
        "roadgate_connect_failures_total",
        "counter",
        "Connection attempts that failed, by reason.",
    );
    for (reason, n) in &m.connect_failures {
        w.sample(
            "roadgate_connect_failures_total",
            &[("reason", reason)],
            &n.to_string(),
        );
    }
    w.family(
        "roadgate_tunnel_bytes_total",
        "counter",
        "Payload bytes through the tunnels; direction in is from the clients.",
    );
    w.sample(
        "roadgate_tunnel_bytes_total",
        &[("direction", "in")],
        &m.bytes_in.to_string(),
    );
    w.sample(
        "roadgate_tunnel_bytes_total",
        &[("direction", "out")],
        &m.bytes_out.to_string(),
    );
    w.family(
        "roadgate_tunnel_packets_total",
        "counter",
        "Packets through the tunnels; direction in is from the clients.",
    );
    w.sample(
        "roadgate_tunnel_packets_total",
        &[("direction", "in")],
        &m.packets_in.to_string(),
    );
    w.sample(
        "roadgate_tunnel_packets_total",
        &[("direction", "out")],
        &m.packets_out.to_string(),
    );
    w.family(
        "roadgate_radius_requests_total",
        "counter",
        "RADIUS requests sent, by server.",
    );
    for r in &m.radius {
        w.sample(
            "roadgate_radius_requests_total",
            &[("server", &r.server)],
            &r.requests.to_string(),
        );
    }
    w.family(
        "roadgate_radius_timeouts_total",
        "counter",
        "RADIUS requests that got no answer after all retransmissions, by server.",
    );
    for r in &m.radius {
        w.sample(
            "roadgate_radius_timeouts_total",
            &[("server", &r.server)],
            &r.timeouts.to_string(),
        );
    }
    w.family(
        "roadgate_radius_request_duration_seconds",
        "histogram",
        "Round-trip time of answered RADIUS requests, by server.",
    );
    for r in &m.radius {
        w.histogram(
            "roadgate_radius_request_duration_seconds",
            &[("server", &r.server)],
            &r.latency,
        );
    }
    w.single(
        "roadgate_accounting_spool_records",
        "gauge",
        "Accounting records waiting in the spool to be sent.",
        m.accounting_spool_depth,
    );
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RadiusMetrics;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn histogram_shape() {
        let m = MetricsView {
            radius: vec![RadiusMetrics {
                server: "10.0.0.2:1812".into(),
                requests: 5,
                timeouts: 1,
                latency: Histogram {
                    buckets: vec![(0.01, 1), (0.1, 3), (1.0, 4)],
                    count: 4,
                    sum_secs: 0.25,
                },
            }],
            ..Default::default()
        };
        let text = render(&m, "0.1.0");
        assert!(text.contains(
            "roadgate_radius_request_duration_seconds_bucket{server=\"10.0.0.2:1812\",le=\"0.1\"} 3\n"
        ));
        assert!(text.contains(
            "roadgate_radius_request_duration_seconds_bucket{server=\"10.0.0.2:1812\",le=\"+Inf\"} 4\n"
        ));
        assert!(text.contains(
            "roadgate_radius_request_duration_seconds_sum{server=\"10.0.0.2:1812\"} 0.25\n"
        ));
        assert!(text.ends_with("roadgate_accounting_spool_records 0\n"));
    }
}
