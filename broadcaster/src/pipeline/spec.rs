//! Stream specs: a stream is a named view of the feed, `NAME` or `NAME=FILTER[;FILTER]` with
//! filters `routes:R1,R2` and `bbox:MINLAT,MINLON,MAXLAT,MAXLON` (see docs/architecture.md).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use stallwatch_core::report::is_valid_stream_name;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("stream name {0:?} is not a DNS label ([a-z0-9-], 1..=63, alphanumeric at both ends)")]
    BadName(String),
    #[error(
        "stream {stream:?}: unknown filter {filter:?} (expected routes:R1,R2 or bbox:MINLAT,MINLON,MAXLAT,MAXLON)"
    )]
    UnknownFilter { stream: String, filter: String },
    #[error("stream {stream:?}: empty route list")]
    EmptyRoutes { stream: String },
    #[error("stream {stream:?}: {reason}")]
    BadBbox { stream: String, reason: String },
    #[error("stream {0:?} is configured twice")]
    Duplicate(String),
}

/// A geographic box in WGS-84 degrees, inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub min_lat: f64,
    pub min_lon: f64,
    pub max_lat: f64,
    pub max_lon: f64,
}

impl BBox {
    /// Checks ranges and ordering; the error says what is wrong.
    pub fn new(min_lat: f64, min_lon: f64, max_lat: f64, max_lon: f64) -> Result<Self, String> {
        let all = [min_lat, min_lon, max_lat, max_lon];
        if all.iter().any(|v| !v.is_finite()) {
            return Err("bbox values must be finite numbers".into());
        }
        if !(-90.0..=90.0).contains(&min_lat) || !(-90.0..=90.0).contains(&max_lat) {
            return Err("bbox latitudes must be within -90..=90".into());
        }
        if !(-180.0..=180.0).contains(&min_lon) || !(-180.0..=180.0).contains(&max_lon) {
            return Err("bbox longitudes must be within -180..=180".into());
        }
        if min_lat > max_lat || min_lon > max_lon {
            return Err("bbox minimum must not exceed maximum".into());
        }
        Ok(Self {
            min_lat,
            min_lon,
            max_lat,
            max_lon,
        })
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.min_lat..=self.max_lat).contains(&lat) && (self.min_lon..=self.max_lon).contains(&lon)
    }
}

impl FromStr for BBox {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(format!("bbox needs 4 comma-separated numbers, got {:?}", s));
        }
        let mut v = [0f64; 4];
        for (slot, part) in v.iter_mut().zip(&parts) {
            *slot = part
                .parse()
                .map_err(|_| format!("bbox value {part:?} is not a number"))?;
        }
        BBox::new(v[0], v[1], v[2], v[3])
    }
}

/// Which vehicles a stream (or a subscriber) carries. Empty = everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `None`: every route.
    pub routes: Option<BTreeSet<String>>,
    pub bbox: Option<BBox>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.routes.is_none() && self.bbox.is_none()
    }

    pub fn matches(&self, route_id: &str, lat: f64, lon: f64) -> bool {
        self.routes.as_ref().is_none_or(|r| r.contains(route_id))
            && self.bbox.as_ref().is_none_or(|b| b.contains(lat, lon))
    }

    /// Does this filter care about routes at all (used to skip work early)?
    pub fn wants_route(&self, route_id: &str) -> bool {
        self.routes.as_ref().is_none_or(|r| r.contains(route_id))
    }
}

/// One configured stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub filter: Filter,
}

impl StreamSpec {
    /// The stream every unconfigured broadcaster serves: all vehicles.
    pub fn all() -> Self {
        Self {
            name: "all".into(),
            filter: Filter::default(),
        }
    }
}

impl FromStr for StreamSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        let (name, filters) = match s.split_once('=') {
            Some((n, f)) => (n.trim(), Some(f)),
            None => (s, None),
        };
        if !is_valid_stream_name(name) {
            return Err(SpecError::BadName(name.into()));
        }
        let mut filter = Filter::default();
        for part in filters.into_iter().flat_map(|f| f.split(';')) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some(routes) = part.strip_prefix("routes:") {
                let set: BTreeSet<String> = routes
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect();
                if set.is_empty() {
                    return Err(SpecError::EmptyRoutes {
                        stream: name.into(),
                    });
                }
                filter.routes.get_or_insert_with(BTreeSet::new).extend(set);
            } else if let Some(bbox) = part.strip_prefix("bbox:") {
                filter.bbox = Some(bbox.parse().map_err(|reason| SpecError::BadBbox {
                    stream: name.into(),
                    reason,
                })?);
            } else {
                return Err(SpecError::UnknownFilter {
                    stream: name.into(),
                    filter: part.into(),
                });
            }
        }
        Ok(Self {
            name: name.into(),
            filter,
        })
    }
}

impl fmt::Display for StreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        let mut parts = Vec::new();
        if let Some(routes) = &self.filter.routes {
            parts.push(format!(
                "routes:{}",
                routes.iter().cloned().collect::<Vec<_>>().join(",")
            ));
        }
        if let Some(b) = &self.filter.bbox {
            parts.push(format!(
                "bbox:{},{},{},{}",
                b.min_lat, b.min_lon, b.max_lat, b.max_lon
            ));
        }
        if !parts.is_empty() {
            write!(f, "={}", parts.join(";"))?;
        }
        Ok(())
    }
}

/// Checks a whole stream list: at least one stream, unique names.
pub fn validate_streams(specs: &[StreamSpec]) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    for s in specs {
        if !seen.insert(s.name.as_str()) {
            return Err(SpecError::Duplicate(s.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
