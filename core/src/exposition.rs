//! A strict parser for the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text,
//! enough to read an app's gauges and counters in zero-code mode ([`crate::scrape`]).
//!
//! Written here rather than taken from crates.io: `prometheus-parse` (the one text parser
//! there) skips lines it cannot read, splits label values on commas and reads OpenMetrics'
//! second timestamps as milliseconds. Skipping is what zero-code mode must not do: an HTML
//! error page has to fail the scrape with the line it choked on, not parse as "no metrics".
//!
//! Only samples are kept (name, labels, value); `# HELP`/`# TYPE`/`# UNIT` and other comments,
//! timestamps and OpenMetrics exemplars are read past. `# EOF` ends an OpenMetrics body.

use std::fmt;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, as exposed (suffixes included).
    pub name: String,
    /// In the order they appear.
    pub labels: Vec<(String, String)>,
    /// The sample's value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Sample {
    /// The sample as an exposition line (label values escaped), without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}=\"{}\"", escape(v))?;
            }
            f.write_str("}")?;
        }
        write!(f, " {}", format_value(self.value))
    }
}

/// Why a body is not an exposition; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what} (in {excerpt:?})")]
pub struct ParseError {
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub what: String,
    /// The start of the offending line, at most 60 bytes.
    pub excerpt: String,
}

/// Parse a whole body. Any line that is neither blank, a comment nor a valid sample fails it.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim() == "EOF" {
                break;
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|what| ParseError {
            line: i + 1,
            what,
            excerpt: crate::report::truncate(line, 60),
        })?;
        out.push(sample);
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut rest = line.trim_start();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return Err("expected a metric name".into());
    }
    let name = rest[..name_len].to_owned();
    rest = &rest[name_len..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("expected a space and a value after {name}"));
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("no value for {name}"))?;
    let value = parse_value(value).ok_or_else(|| format!("{value:?} is not a number"))?;
    // An optional timestamp, then (OpenMetrics) an optional exemplar starting with `#`.
    if let Some(ts) = fields.next()
        && !ts.starts_with('#')
    {
        ts.parse::<f64>()
            .map_err(|_| format!("{ts:?} is not a timestamp"))?;
        if let Some(extra) = fields.next()
            && !extra.starts_with('#')
        {
            return Err(format!("unexpected {extra:?} after the timestamp"));
        }
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Labels after the `{`; returns what follows the closing `}`.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let key_len = rest
            .char_indices()
            .find(|&(i, c)| !is_label_char(c, i == 0))
            .map_or(rest.len(), |(i, _)| i);
        if key_len == 0 {
            return Err("expected a label name or '}'".into());
        }
        let key = rest[..key_len].to_owned();
        rest = rest[key_len..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {key}"))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("expected a quoted value for label {key}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {key}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    // The 0.0.4 format keeps any other escaped character as it is.
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(format!("unterminated value of label {key}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(k, _)| *k == key) {
            return Err(format!("label {key} appears twice"));
        }
        labels.push((key, value));
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn is_label_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!first && c.is_ascii_digit())
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        // Rust would also take "infinity" and the like; the formats do not.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
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

#[cfg(test)]
mod tests;
