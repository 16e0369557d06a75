//! `spec.streams`: the broadcast streams, their filters, and each as the broadcaster's
//! `--stream` value.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One broadcast stream: a name clients subscribe to and optional filters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// The stream name, a DNS label (lowercase letters, digits, '-', at most 63).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Only vehicles on these route ids (each 1-64 of `A-Z a-z 0-9 . _ -`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub routes: Vec<RouteId>,
    /// Only vehicles inside this box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
}

/// A GTFS route id as a filter: 1-64 of `A-Z a-z 0-9 . _ -` (no `,` or `;`, which separate
/// filters on the broadcaster's command line).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct RouteId(pub String);

impl JsonSchema for RouteId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RouteId".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[A-Za-z0-9._-]+$",
        })
    }
}

impl From<&str> for RouteId {
    fn from(s: &str) -> Self {
        RouteId(s.to_string())
    }
}

/// A latitude/longitude box.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.minLat < self.maxLat && self.minLon < self.maxLon").message("bbox: min must be below max"))]
#[serde(rename_all = "camelCase")]
pub struct BoundingBox {
    /// Southern edge, degrees (WGS-84).
    #[schemars(range(min = -90.0, max = 90.0))]
    pub min_lat: f64,
    /// Western edge, degrees (WGS-84).
    #[schemars(range(min = -180.0, max = 180.0))]
    pub min_lon: f64,
    /// Northern edge, degrees (WGS-84).
    #[schemars(range(min = -90.0, max = 90.0))]
    pub max_lat: f64,
    /// Eastern edge, degrees (WGS-84).
    #[schemars(range(min = -180.0, max = 180.0))]
    pub max_lon: f64,
}

impl StreamSpec {
    /// This stream as the broadcaster's `--stream NAME[=FILTER[;FILTER]]` value.
    pub fn cli_value(&self) -> String {
        let mut filters = Vec::new();
        if !self.routes.is_empty() {
            let routes: Vec<&str> = self.routes.iter().map(|r| r.0.as_str()).collect();
            filters.push(format!("routes:{}", routes.join(",")));
        }
        if let Some(b) = &self.bbox {
            filters.push(format!(
                "bbox:{},{},{},{}",
                b.min_lat, b.min_lon, b.max_lat, b.max_lon
            ));
        }
        if filters.is_empty() {
            self.name.clone()
        } else {
            format!("{}={}", self.name, filters.join(";"))
        }
    }
}
