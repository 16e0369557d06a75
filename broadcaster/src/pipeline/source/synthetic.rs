//! The embedded default source: vehicles moving around circular routes, one full
//! `FeedMessage` snapshot per tick with a vehicle position and a trip update (arrival
//! predictions for its next stops) per vehicle and a few service alerts, optionally with
//! malformed vehicle positions (a fraction of them, or exactly one "poison" entity after a
//! delay, as in the story). Each malformation breaks a rule the GTFS-realtime reference states.

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Ingest;
use crate::generated::transit_realtime::translated_string::Translation;
use crate::generated::transit_realtime::trip_update::{StopTimeEvent, StopTimeUpdate};
use crate::generated::transit_realtime::{
    Alert, EntitySelector, FeedEntity, FeedHeader, FeedMessage, Position, TimeRange,
    TranslatedString, TripDescriptor, TripUpdate, VehicleDescriptor, VehiclePosition,
};

/// `synthetic://?vehicles=40&routes=4&trip_updates=true&alerts=2&rate=10&malformed_rate=0.0&poison_after=3s&poison_stream_route=R1&limit=0&seed=1`
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    pub vehicles: u32,
    pub routes: u32,
    /// A trip update per vehicle.
    pub trip_updates: bool,
    /// Service alerts per message: the first concerns the whole agency, the others one route
    /// each (R1, R2, ...).
    pub alerts: u32,
    /// Feed messages per second.
    pub rate: f64,
    /// Fraction of entities made malformed.
    pub malformed_rate: f64,
    /// Inject exactly one malformed entity this long after the start.
    pub poison_after: Option<Duration>,
    /// The route the poison entity's vehicle is on (default: `R1`), so only streams carrying
    /// that route see it.
    pub poison_stream_route: Option<String>,
    /// Stop after this many messages; 0 = never.
    pub limit: u64,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            vehicles: 40,
            routes: 4,
            trip_updates: true,
            alerts: 2,
            rate: 10.0,
            malformed_rate: 0.0,
            poison_after: None,
            poison_stream_route: None,
            limit: 0,
            seed: 1,
        }
    }
}

impl SyntheticConfig {
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut cfg = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |what: &str| format!("{key}={value:?}: {what}");
            match key {
                "vehicles" => {
                    cfg.vehicles = value.parse().map_err(|_| bad("not a whole number"))?;
                    if cfg.vehicles == 0 || cfg.vehicles > 100_000 {
                        return Err(bad("vehicles must be 1..=100000"));
                    }
                }
                "routes" => {
                    cfg.routes = value.parse().map_err(|_| bad("not a whole number"))?;
                    if cfg.routes == 0 || cfg.routes > 10_000 {
                        return Err(bad("routes must be 1..=10000"));
                    }
                }
                "trip_updates" => {
                    cfg.trip_updates = value.parse().map_err(|_| bad("not true or false"))?;
                }
                "alerts" => {
                    cfg.alerts = value.parse().map_err(|_| bad("not a whole number"))?;
                    if cfg.alerts > 10_000 {
                        return Err(bad("alerts must be 0..=10000"));
                    }
                }
                "rate" => {
                    cfg.rate = value.parse().map_err(|_| bad("not a number"))?;
                    if !cfg.rate.is_finite() || cfg.rate <= 0.0 || cfg.rate > 100_000.0 {
                        return Err(bad("rate must be > 0 and <= 100000 messages/s"));
                    }
                }
                "malformed_rate" => {
                    cfg.malformed_rate = value.parse().map_err(|_| bad("not a number"))?;
                    if !(0.0..=1.0).contains(&cfg.malformed_rate) {
                        return Err(bad("malformed_rate must be within 0..=1"));
                    }
                }
                "poison_after" => {
                    cfg.poison_after =
                        Some(humantime::parse_duration(value).map_err(|e| bad(&e.to_string()))?);
                }
                "poison_stream_route" => {
                    if value.is_empty() {
                        return Err(bad("empty route"));
                    }
                    cfg.poison_stream_route = Some(value.to_string());
                }
                "limit" => cfg.limit = value.parse().map_err(|_| bad("not a whole number"))?,
                "seed" => cfg.seed = value.parse().map_err(|_| bad("not a whole number"))?,
                _ => return Err(format!("unknown parameter {key:?}")),
            }
        }
        Ok(cfg)
    }
}

/// Ways the generator breaks a vehicle position, each one a real-world feed bug and a
/// violation of a rule the GTFS-realtime reference states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    NanLatitude,
    LongitudeOutOfRange,
    /// Neither a trip nor a vehicle descriptor: the position belongs to nothing.
    NoDescriptor,
    /// An unparsable field, like the story's `int.Parse` on a bad value.
    UnparsableStartDate,
}

impl Malformation {
    const ALL: [Malformation; 4] = [
        Self::NanLatitude,
        Self::LongitudeOutOfRange,
        Self::NoDescriptor,
        Self::UnparsableStartDate,
    ];

    fn apply(self, entity: &mut FeedEntity) {
        let Some(vp) = entity.vehicle.as_mut() else {
            return;
        };
        match self {
            Self::NanLatitude => {
                if let Some(p) = vp.position.as_mut() {
                    p.latitude = Some(f32::NAN);
                }
            }
            Self::LongitudeOutOfRange => {
                if let Some(p) = vp.position.as_mut() {
                    p.longitude = Some(512.0);
                }
            }
            Self::NoDescriptor => {
                vp.trip = None;
                vp.vehicle = None;
            }
            Self::UnparsableStartDate => {
                if let Some(t) = vp.trip.as_mut() {
                    t.start_date = Some("2026-11-28T".into());
                }
            }
        }
    }
}

/// Builds successive feed snapshots. Deterministic for a given seed and tick.
#[derive(Debug)]
pub struct Generator {
    cfg: SyntheticConfig,
    rng: StdRng,
    tick: u64,
}

const CENTER: (f64, f64) = (52.52, 13.405);

impl Generator {
    pub fn new(cfg: SyntheticConfig) -> Self {
        Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            tick: 0,
        }
    }

    pub fn route_of(&self, vehicle: u32) -> String {
        format!("R{}", vehicle % self.cfg.routes + 1)
    }

    /// The next snapshot; `poison` makes exactly one entity (on the poison route) malformed.
    pub fn next_message(&mut self, now_secs: u64, poison: bool) -> FeedMessage {
        self.tick += 1;
        let poison_route = self
            .cfg
            .poison_stream_route
            .clone()
            .unwrap_or_else(|| "R1".into());
        let mut poisoned = !poison;
        let date = civil_date(now_secs);
        let mut entities = Vec::with_capacity(self.cfg.vehicles as usize * 2);
        let mut trip_updates = Vec::with_capacity(self.cfg.vehicles as usize);
        for v in 0..self.cfg.vehicles {
            let route_index = v % self.cfg.routes;
            let route = format!("R{}", route_index + 1);
            // Each route is a circle around its own centre; vehicles are spread along it.
            let ring = 0.01 + 0.004 * (route_index % 8) as f64;
            let route_angle = TAU * route_index as f64 / self.cfg.routes as f64;
            let (clat, clon) = (
                CENTER.0 + 0.02 * route_angle.sin(),
                CENTER.1 + 0.03 * route_angle.cos(),
            );
            let phase = TAU * (v / self.cfg.routes) as f64
                / (self.cfg.vehicles.div_ceil(self.cfg.routes)) as f64
                + self.tick as f64 * 0.002;
            let (lat, lon) = (clat + ring * phase.sin(), clon + ring * 1.6 * phase.cos());
            let bearing = ((phase.to_degrees() + 360.0) % 360.0) as f32;
            let trip = TripDescriptor {
                trip_id: Some(format!("T{}-{v}", route_index + 1)),
                route_id: Some(route.clone()),
                start_date: Some(date.clone()),
                ..Default::default()
            };
            if self.cfg.trip_updates {
                trip_updates.push(trip_update(v, trip.clone(), now_secs, self.tick));
            }
            let mut entity = FeedEntity {
                id: format!("veh-{v}"),
                vehicle: Some(VehiclePosition {
                    trip: Some(trip),
                    vehicle: Some(VehicleDescriptor {
                        id: Some(format!("V{v}")),
                        label: Some(format!("{} bus {v}", route)),
                        ..Default::default()
                    }),
                    position: Some(Position {
                        latitude: Some(lat as f32),
                        longitude: Some(lon as f32),
                        bearing: Some(bearing),
                        odometer: None,
                        speed: Some(8.0 + (v % 5) as f32),
                    }),
                    timestamp: Some(now_secs),
                    ..Default::default()
                }),
                ..Default::default()
            };
            if !poisoned && route == poison_route {
                Malformation::UnparsableStartDate.apply(&mut entity);
                poisoned = true;
            } else if self.cfg.malformed_rate > 0.0 && self.rng.random_bool(self.cfg.malformed_rate)
            {
                let kind = Malformation::ALL[self.rng.random_range(0..Malformation::ALL.len())];
                kind.apply(&mut entity);
            }
            entities.push(entity);
        }
        entities.append(&mut trip_updates);
        entities.extend((0..self.cfg.alerts).map(|a| alert(a, self.cfg.routes, now_secs)));
        FeedMessage {
            header: FeedHeader {
                gtfs_realtime_version: "2.0".into(),
                incrementality: None,
                timestamp: Some(now_secs),
                feed_version: None,
            },
            entity: entities,
        }
    }
}

/// Stops a trip update predicts.
const PREDICTED_STOPS: u32 = 3;

/// Arrival predictions for the vehicle's next stops, a little late.
fn trip_update(vehicle: u32, trip: TripDescriptor, now_secs: u64, tick: u64) -> FeedEntity {
    let delay = ((tick + u64::from(vehicle)) % 180) as i32;
    let next_stop = (tick / 50 + u64::from(vehicle)) % 20;
    FeedEntity {
        id: format!("trip-{vehicle}"),
        trip_update: Some(TripUpdate {
            trip: Some(trip),
            vehicle: Some(VehicleDescriptor {
                id: Some(format!("V{vehicle}")),
                ..Default::default()
            }),
            stop_time_update: (0..PREDICTED_STOPS)
                .map(|i| {
                    let stop = next_stop as u32 + i;
                    StopTimeUpdate {
                        stop_sequence: Some(stop + 1),
                        stop_id: Some(format!("S{stop}")),
                        arrival: Some(StopTimeEvent {
                            delay: Some(delay),
                            time: Some(now_secs as i64 + 120 * i64::from(i + 1) + i64::from(delay)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect(),
            timestamp: Some(now_secs),
            delay: Some(delay),
        }),
        ..Default::default()
    }
}

/// Alert 0 concerns the whole agency, alert `n` route `R{n}` (wrapping over the routes).
fn alert(n: u32, routes: u32, now_secs: u64) -> FeedEntity {
    let (selector, text) = if n == 0 {
        (
            EntitySelector {
                agency_id: Some("synthetic".into()),
                ..Default::default()
            },
            "Service notice for all routes".to_string(),
        )
    } else {
        let route = format!("R{}", (n - 1) % routes + 1);
        let text = format!("Delays on {route}");
        (
            EntitySelector {
                route_id: Some(route),
                ..Default::default()
            },
            text,
        )
    };
    let translated = |text: String| TranslatedString {
        translation: vec![Translation {
            text: Some(text),
            language: Some("en".into()),
        }],
    };
    FeedEntity {
        id: format!("alert-{n}"),
        alert: Some(Alert {
            active_period: vec![TimeRange {
                start: Some(now_secs.saturating_sub(600)),
                end: Some(now_secs + 3600),
            }],
            informed_entity: vec![selector],
            cause: Some(if n == 0 { 2 } else { 10 }),
            effect: Some(if n == 0 { 7 } else { 3 }),
            header_text: Some(translated(text)),
            description_text: Some(translated("Synthetic alert from the test feed.".into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `YYYYMMDD` of a Unix timestamp (UTC), Howard Hinnant's days-to-civil algorithm.
fn civil_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

#[async_backtrace::framed]
pub async fn run(cfg: SyntheticConfig, ingest: Ingest) {
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / cfg.rate);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let poison_after = cfg.poison_after;
    let limit = cfg.limit;
    let mut generator = Generator::new(cfg);
    let mut poisoned = false;
    let mut sent = 0u64;
    loop {
        ticker.tick().await;
        let poison = !poisoned && poison_after.is_some_and(|after| started.elapsed() >= after);
        if poison {
            poisoned = true;
            tracing::info!("synthetic source: injecting one poison entity now");
        }
        let msg = generator.next_message(stallwatch_core::clock::now_ms() / 1000, poison);
        ingest.push(Bytes::from(msg.encode_to_vec()));
        sent += 1;
        if limit != 0 && sent >= limit {
            tracing::info!(sent, "synthetic source: limit reached, stopping");
            return;
        }
    }
}

#[cfg(test)]
mod tests;
