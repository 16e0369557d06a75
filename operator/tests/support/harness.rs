// The reconcile harness shared by the operator's reconcile tests and the end-to-end test of
// the operator against a real sidecar (both `include!` it after `fake_api.rs`): a fake API,
// reflector stores fed by hand, a settable clock, and helpers to build pods and read status.
// Each includer passes its own sidecar (a fake, or the real HTTP client).

fn spent_history(n: usize) -> Value {
    let at = |ms: u64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            Timestamp::from_millisecond(ms as i64).unwrap(),
        )
    };
    let entries: Vec<Value> = (0..n as u64)
        .map(|i| {
            json!({
                "id": format!("demo-old/all@{i}"), "pod": "demo-old", "stream": "all",
                "reason": "ChannelStuck",
                "stalledSince": at(T0 - 3_000_000 + i), "startedAt": at(T0 - 3_000_000 + i),
                "step": "Done", "stepStartedAt": at(T0 - 2_000_000),
                "restart": "Succeeded", "outcome": "Restarted", "finishedAt": at(T0 - 2_000_000)
            })
        })
        .collect();
    json!({"history": entries})
}

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
    timeline: Timeline,
    pods: Writer<Pod>,
    streams: Writer<TransitStream>,
    clock: Arc<AtomicU64>,
    registry: Registry,
}

fn fixture() -> TransitStream {
    let mut ts = TransitStream::new(
        "demo",
        TransitStreamSpec::with_source(Source {
            synthetic: Some(SyntheticSource::default()),
            ..Source::default()
        }),
    );
    ts.metadata.namespace = Some(NS.into());
    ts.metadata.uid = Some("ts-uid".into());
    ts.metadata.generation = Some(1);
    ts
}

fn harness_with(timeout: Duration, timeline: Timeline, sidecar: Arc<dyn SidecarApi>) -> Harness {
    let api = FakeApi::new(timeline.clone());
    let (pod_store, pods) = reflector::store::<Pod>();
    let (ts_store, streams) = reflector::store::<TransitStream>();
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let ctx = Arc::new(Context::new(
        api.client(),
        Settings {
            default_image: "stallwatch:test".into(),
            max_concurrent_remediations: 2,
            reconcile_timeout: timeout,
            instance: Some("op-0".into()),
        },
        pod_store,
        ts_store,
        sidecar,
        metrics,
        Arc::new(move || c.load(Ordering::SeqCst)),
    ));
    Harness {
        api,
        ctx,
        timeline,
        pods,
        streams,
        clock,
        registry,
    }
}

impl Harness {
    /// Store the TransitStream in the API and the cache; returns what the controller would pass.
    fn stream(&mut self, ts: &TransitStream) -> Arc<TransitStream> {
        self.api.put(TS_PATH, serde_json::to_value(ts).unwrap());
        let stored: TransitStream = serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap();
        self.streams
            .apply_watcher_event(&watcher::Event::Apply(stored.clone()));
        Arc::new(stored)
    }

    /// The TransitStream as the API now has it.
    fn current(&self) -> TransitStream {
        serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap()
    }

    fn pod(&mut self, pod: Pod) {
        self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }

    fn timeline(&self) -> Vec<String> {
        self.timeline.lock().unwrap().clone()
    }

    fn metrics(&self) -> String {
        transit_operator::metrics::render(&self.registry)
    }

    async fn reconcile(&mut self) -> Result<Action, Error> {
        let ts = Arc::new(self.current());
        self.streams
            .apply_watcher_event(&watcher::Event::Apply((*ts).clone()));
        reconcile(ts, self.ctx.clone()).await
    }
}

fn pod_with_ip(name: &str, uid: &str, stalled_since: Option<u64>, pod_ip: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some(NS.into());
    p.metadata.uid = Some(uid.into());
    p.metadata.labels = Some(stallwatch_crds::selector_labels("demo"));
    let condition = match stalled_since {
        Some(since) => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "False".into(),
            reason: Some("DispatcherDead".into()),
            message: Some(format_message(&[StalledStream {
                stream: "all".into(),
                reason: StallReason::DispatcherDead,
                depth: 5,
                capacity: 5,
                secs_since_dequeue: None,
            }])),
            last_transition_time: Some(Time(Timestamp::from_millisecond(since as i64).unwrap())),
            ..PodCondition::default()
        },
        None => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "True".into(),
            reason: Some("Healthy".into()),
            ..PodCondition::default()
        },
    };
    p.status = Some(PodStatus {
        pod_ip: Some(pod_ip.into()),
        conditions: Some(vec![condition]),
        ..PodStatus::default()
    });
    p
}

fn position(timeline: &[String], needle: &str) -> usize {
    timeline
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in timeline:\n{}", timeline.join("\n")))
}

fn count(timeline: &[String], needle: &str) -> usize {
    timeline.iter().filter(|l| l.contains(needle)).count()
}

fn condition(ts: &TransitStream, type_: &str) -> (String, String) {
    let c = ts
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}
