//! `TransitStream` test objects, as the API server would store them. Compiled for this crate's
//! own tests and, with feature `test-util`, for other crates' tests (`stallwatch-testkit`
//! re-exports it).
//!
//! ```
//! use stallwatch_crds::TransitStream;
//! use stallwatch_crds::testing::TransitStreamExt as _;
//!
//! let ts = TransitStream::test("demo").namespace("transit").uid("ts-uid").build();
//! assert_eq!(ts.metadata.generation, Some(1));
//! assert!(ts.spec.source.is_some_and(|s| s.synthetic.is_some()));
//! ```

use crate::{Source, StreamSpec, SyntheticSource, TransitStream, TransitStreamSpec};

/// `TransitStream::test(name)`: the entry point to [`TransitStreamBuilder`].
pub trait TransitStreamExt {
    /// A [`TransitStreamBuilder`] for a TransitStream called `name`.
    fn test(name: &str) -> TransitStreamBuilder;
}

impl TransitStreamExt for TransitStream {
    fn test(name: &str) -> TransitStreamBuilder {
        TransitStreamBuilder::new(name)
    }
}

/// A TransitStream with a synthetic source and every spec default, generation 1, no
/// namespace, uid or resourceVersion unless set.
#[derive(Debug, Clone)]
#[must_use]
pub struct TransitStreamBuilder {
    ts: TransitStream,
}

impl TransitStreamBuilder {
    /// A TransitStream called `name` (see the type's defaults).
    pub fn new(name: &str) -> Self {
        let mut ts = TransitStream::new(
            name,
            TransitStreamSpec::with_source(Source {
                synthetic: Some(SyntheticSource::default()),
                ..Source::default()
            }),
        );
        ts.metadata.generation = Some(1);
        TransitStreamBuilder { ts }
    }

    /// Puts it in `namespace`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.ts.metadata.namespace = Some(namespace.into());
        self
    }

    /// Gives it the uid `uid` (owner references need one).
    pub fn uid(mut self, uid: &str) -> Self {
        self.ts.metadata.uid = Some(uid.into());
        self
    }

    /// `None` for an object as built locally, before the API server stored it.
    pub fn generation(mut self, generation: impl Into<Option<i64>>) -> Self {
        self.ts.metadata.generation = generation.into();
        self
    }

    /// Gives it the resourceVersion `version`, as the API server stamps a stored object.
    pub fn resource_version(mut self, version: &str) -> Self {
        self.ts.metadata.resource_version = Some(version.into());
        self
    }

    /// Streams with these names, each on `routes` and without a bounding box.
    pub fn streams<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
        routes: &[&str],
    ) -> Self {
        self.ts.spec.streams = names
            .into_iter()
            .map(|name| StreamSpec {
                name: name.into(),
                routes: routes.iter().map(|r| (*r).into()).collect(),
                bbox: None,
            })
            .collect();
        self
    }

    /// Any other spec change.
    pub fn spec(mut self, edit: impl FnOnce(&mut TransitStreamSpec)) -> Self {
        edit(&mut self.ts.spec);
        self
    }

    /// The TransitStream.
    pub fn build(self) -> TransitStream {
        self.ts
    }
}

/// The spec of [`TransitStream::test`]: a synthetic source and every default.
pub fn synthetic_spec() -> TransitStreamSpec {
    TransitStreamBuilder::new("x").build().spec
}
