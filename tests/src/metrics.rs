//! Prometheus text exposition, parsed for assertions.

use std::collections::BTreeMap;

/// Prometheus text, parsed into `(name, labels) -> value`.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub BTreeMap<(String, String), f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (n.to_string(), l.trim_end_matches('}').to_string()),
                None => (key.to_string(), String::new()),
            };
            m.insert((name, labels), v);
        }
        Metrics(m)
    }

    /// The sum of `name` over the series whose labels contain every `label="value"` given.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// A broadcaster per-stream series, e.g. `stream("dequeued_total", "all")`.
    pub fn stream(&self, short: &str, stream: &str) -> u64 {
        self.sum(
            &format!("stallwatch_broadcaster_{short}"),
            &[("stream", stream)],
        ) as u64
    }
}
