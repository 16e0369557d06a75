//! Drift of owned objects: which TransitStreams own an object that was deleted or changed by
//! someone else since the operator last applied it.
//!
//! The controller watches every owned kind metadata-only (no cache of their contents) and
//! feeds each event here; an event whose `resourceVersion` is not the one the operator's own
//! apply returned marks the owner dirty, and the owner's next reconcile (which the same event
//! triggers) re-applies its objects. So drift is repaired within one reconcile, and a steady
//! state costs no API request: an unchanged TransitStream re-applies nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stallwatch_core::sync::lock;

/// `(kind, namespace, name)` of one owned object.
type ObjectKey = (String, String, String);

#[derive(Debug)]
struct Applied {
    resource_version: String,
    owner: String,
}

/// What the operator applied and which owners drifted since.
#[derive(Debug, Default)]
pub struct Drift {
    /// The resourceVersion each owned object had after the operator's last apply (or read),
    /// and its owner.
    applied: Mutex<HashMap<ObjectKey, Applied>>,
    /// Owners (`namespace/name`) with an object that drifted.
    dirty: Mutex<HashSet<String>>,
    /// Objects listed so far in a relist, per kind (a watch restart lists everything again).
    relisting: Mutex<HashMap<String, HashSet<ObjectKey>>>,
}

/// The `namespace/name` of the TransitStream controlling `meta`, if any.
fn owner_key(meta: &ObjectMeta) -> Option<String> {
    let ns = meta.namespace.as_deref()?;
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "TransitStream")?;
    Some(format!("{ns}/{}", owner.name))
}

fn object_key(kind: &str, meta: &ObjectMeta) -> Option<ObjectKey> {
    Some((
        kind.to_string(),
        meta.namespace.clone()?,
        meta.name.clone()?,
    ))
}

impl Drift {
    /// The operator applied (or read) `meta` of `kind`: its resourceVersion is ours.
    pub fn applied(&self, kind: &str, meta: &ObjectMeta) {
        if let (Some(key), Some(resource_version), Some(owner)) = (
            object_key(kind, meta),
            meta.resource_version.clone(),
            owner_key(meta),
        ) {
            lock(&self.applied).insert(
                key,
                Applied {
                    resource_version,
                    owner,
                },
            );
        }
    }

    /// A watch saw `meta` of `kind` (created or changed).
    pub fn seen(&self, kind: &str, meta: &ObjectMeta) {
        let (Some(key), Some(owner)) = (object_key(kind, meta), owner_key(meta)) else {
            return;
        };
        if let Some(listed) = lock(&self.relisting).get_mut(kind) {
            listed.insert(key.clone());
        }
        let ours = lock(&self.applied)
            .get(&key)
            .is_some_and(|a| meta.resource_version.as_ref() == Some(&a.resource_version));
        if !ours {
            lock(&self.dirty).insert(owner);
        }
    }

    /// A watch saw `meta` of `kind` deleted. `owner_exists(namespace, name)`: whether its
    /// TransitStream is still there (the garbage collector deletes the objects of a deleted
    /// one: nothing to repair, nothing to remember).
    pub fn deleted(
        &self,
        kind: &str,
        meta: &ObjectMeta,
        owner_exists: impl Fn(&str, &str) -> bool,
    ) {
        let (Some(key), Some(owner)) = (object_key(kind, meta), owner_key(meta)) else {
            return;
        };
        lock(&self.applied).remove(&key);
        let (ns, name) = owner.split_once('/').unwrap_or_default();
        if owner_exists(ns, name) {
            lock(&self.dirty).insert(owner);
        }
    }

    /// A (re)list of `kind` starts: objects not listed again by [`Drift::relisted`] were
    /// deleted while the watch was down.
    pub fn relist_started(&self, kind: &str) {
        lock(&self.relisting).insert(kind.to_string(), HashSet::new());
    }

    /// The (re)list of `kind` is complete: every applied object it did not list is gone.
    pub fn relisted(&self, kind: &str) {
        let Some(listed) = lock(&self.relisting).remove(kind) else {
            return;
        };
        let mut dirty = lock(&self.dirty);
        lock(&self.applied).retain(|key, applied| {
            let kept = key.0 != kind || listed.contains(key);
            if !kept {
                dirty.insert(applied.owner.clone());
            }
            kept
        });
    }

    /// Whether `owner` drifted; clears the mark (the caller re-applies, and calls
    /// [`Drift::mark`] again if that fails).
    pub fn take(&self, owner: &str) -> bool {
        lock(&self.dirty).remove(owner)
    }

    /// Whether `owner` drifted, leaving the mark in place.
    pub fn is_dirty(&self, owner: &str) -> bool {
        lock(&self.dirty).contains(owner)
    }

    /// Marks `owner` dirty again (its re-apply failed).
    pub fn mark(&self, owner: &str) {
        lock(&self.dirty).insert(owner.to_string());
    }

    /// Forgets a deleted TransitStream.
    pub fn forget(&self, owner: &str) {
        lock(&self.dirty).remove(owner);
        lock(&self.applied).retain(|_, a| a.owner != owner);
    }
}

#[cfg(test)]
mod tests;
